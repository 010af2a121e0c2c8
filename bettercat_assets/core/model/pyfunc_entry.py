"""MLflow models-from-code entry point of the registered model (no pickle anywhere).

`mlflow.pyfunc.log_model(python_model=<this file>)` copies this file into the model; loading the
model runs it, and `set_model` hands MLflow the `TopKCategoriesModel` to load the compact form.
"""

from mlflow.models import set_model

from bettercat_assets.core.model.pyfunc import TopKCategoriesModel

set_model(TopKCategoriesModel())
