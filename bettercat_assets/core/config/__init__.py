"""Configuration: the client registry (`clients.yaml`), settings, data paths, errors and the rounding of reported numbers.

Offers:
- `clients`: ClientConfig, ClientRegistry, load_clients, clients_file_path
- `monitoring`: Monitoring (the `monitoring` block of clients.yaml)
- `settings`: TrackingSettings
- `paths`: DataLayout
- `errors`: BettercatError, ConfigError, DataError, UnknownClientError, ModelNotFoundError, QualityGateError, UnsafeModelError, TrackingUnavailableError
- `rounding`: round_metrics, round_float
"""

from bettercat_assets.core._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "ClientConfig": "clients",
        "ClientRegistry": "clients",
        "load_clients": "clients",
        "clients_file_path": "clients",
        "Monitoring": "monitoring",
        "TrackingSettings": "settings",
        "DataLayout": "paths",
        "BettercatError": "errors",
        "ConfigError": "errors",
        "DataError": "errors",
        "UnknownClientError": "errors",
        "ModelNotFoundError": "errors",
        "QualityGateError": "errors",
        "UnsafeModelError": "errors",
        "TrackingUnavailableError": "errors",
        "round_metrics": "rounding",
        "round_float": "rounding",
    },
)
