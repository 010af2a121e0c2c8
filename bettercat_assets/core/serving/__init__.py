"""Real-time serving: one client's `@champion` (`bettercat serve --client-id`, `mlflow models
serve`) or every client from one process (`bettercat serve`, the fleet server).

Offers:
- `server`: ServeCommand, servable_champion, champion_model_uri, scoring_server_command
- `errors`: TrimmedErrors, useful_message (a 400 in one sentence)
- `fleet`: create_app, build_models, serve (the fleet server)
- `fleet_limits`: FleetLimits
- `model_cache`: ModelCache, CachedModel
- `champion_watch`: ChampionWatch, sweep
- `model_loader`: ModelLoader
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
        "create_app": "fleet",
        "build_models": "fleet",
        "serve": "fleet",
        "FleetLimits": "fleet_limits",
        "ModelCache": "model_cache",
        "CachedModel": "model_cache",
        "ChampionWatch": "champion_watch",
        "sweep": "champion_watch",
        "ModelLoader": "model_loader",
    },
)
