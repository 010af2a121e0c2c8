"""Input data: reading and validating the clients' files, training-data checks, sample generation.

Offers:
- `loading`: TrainingTable, load_training_table, load_scoring_table, read_header, check_scoring_header
- `quality`: CheckOutcome, training_data_outcomes
- `generate`: GeneratedClient, generate_client_data, generate_all
"""

from bettercat_assets.core._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "TrainingTable": "loading",
        "load_training_table": "loading",
        "load_scoring_table": "loading",
        "read_header": "loading",
        "check_scoring_header": "loading",
        "CheckOutcome": "quality",
        "training_data_outcomes": "quality",
        "GeneratedClient": "generate",
        "generate_client_data": "generate",
        "generate_all": "generate",
    },
)
