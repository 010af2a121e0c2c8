"""Which clients exist and where their files live."""

from pathlib import Path

from dagster import ConfigurableResource

from bettercat_assets.core.config.clients import ClientConfig, ClientRegistry, load_clients
from bettercat_assets.core.config.paths import DataLayout


class ClientsResource(ConfigurableResource):
    """`clients.yaml` and the data prefix, as configured on the code location."""

    clients_file: str
    data_prefix: str

    def registry(self) -> ClientRegistry:
        return load_clients(self.clients_file)

    def client(self, client_id: str) -> ClientConfig:
        """A client's config; a partition key that left clients.yaml fails clearly."""
        return self.registry().get(client_id)

    @property
    def layout(self) -> DataLayout:
        return DataLayout(Path(self.data_prefix))
