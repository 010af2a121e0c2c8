"""Real-time serving: `bettercat serve` and `mlflow models serve` of a client's `@champion`.

Offers:
- `server`: ServeCommand, servable_champion, champion_model_uri, scoring_server_command
- `errors`: TrimmedErrors, useful_message (a 400 in one sentence)
"""

from bettercat_assets.core._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "ServeCommand": "server",
        "servable_champion": "server",
        "champion_model_uri": "server",
        "scoring_server_command": "server",
        "TrimmedErrors": "errors",
        "useful_message": "errors",
    },
)
