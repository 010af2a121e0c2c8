"""Batch scoring: one Spark pass for many clients, the lean worker code, model shipping, output checks, output locks and reading outputs back.

`batch_scorer` runs in Spark workers and imports neither MLflow nor scikit-learn.

Offers:
- `spark_pass`: ScoringRequest, ScoringResult, ScoringError, score_clients, predict_categories, read_products
- `batch_scorer`: ShippedModel, score_batches, load_shipped
- `model_shipping`: StagedModel, stage_model, ship_model
- `prediction_checks`: prediction_outcomes, prediction_stats
- `output_lock`: OutputLock, OutputLockedError
- `readback`: read_predictions, wide_preview, lineage_of, Lineage
"""

from bettercat_assets.core._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "ScoringRequest": "spark_pass",
        "ScoringResult": "spark_pass",
        "ScoringError": "spark_pass",
        "score_clients": "spark_pass",
        "predict_categories": "spark_pass",
        "read_products": "spark_pass",
        "ShippedModel": "batch_scorer",
        "score_batches": "batch_scorer",
        "load_shipped": "batch_scorer",
        "StagedModel": "model_shipping",
        "stage_model": "model_shipping",
        "ship_model": "model_shipping",
        "prediction_outcomes": "prediction_checks",
        "prediction_stats": "prediction_checks",
        "OutputLock": "output_lock",
        "OutputLockedError": "output_lock",
        "read_predictions": "readback",
        "wide_preview": "readback",
        "lineage_of": "readback",
        "Lineage": "readback",
    },
)
