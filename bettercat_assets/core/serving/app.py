"""The ASGI app `bettercat serve` runs: MLflow's scoring server (which loads the model named by
its environment at import) behind `TrimmedErrors`."""

from mlflow.pyfunc.scoring_server.app import app as mlflow_app

from bettercat_assets.core.serving.errors import TrimmedErrors

app = TrimmedErrors(mlflow_app)
