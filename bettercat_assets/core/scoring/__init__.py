"""Batch scoring: one Spark pass for many clients, the lean worker code, model shipping, pass statistics, output checks, output locks and reading outputs back.

`batch_scorer`, `pass_stats` and `check_stats` run in Spark workers and import neither MLflow
nor scikit-learn.

Offers:
- `spark_pass`: ScoringRequest, score_clients, predict_categories
- `finalize`: ScoringResult
- `shared_pass`: ScoringError
- `scoring_inputs`: read_products
- `batch_scorer`: ShippedModel, score_batches, load_shipped
- `pass_stats`: PassStatistic, ScoredSlice, read_pass_stats
- `check_stats`: CheckStatistic
- `model_shipping`: StagedModel, stage_model, ship_model
- `prediction_checks`: prediction_outcomes
- `output_lock`: OutputLock, OutputLockedError
- `readback`: read_predictions, wide_preview, lineage_of, Lineage
"""

from bettercat_assets.core._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "ScoringRequest": "spark_pass",
        "ScoringResult": "finalize",
        "ScoringError": "shared_pass",
        "score_clients": "spark_pass",
        "predict_categories": "spark_pass",
        "read_products": "scoring_inputs",
        "ShippedModel": "batch_scorer",
        "score_batches": "batch_scorer",
        "load_shipped": "batch_scorer",
        "PassStatistic": "pass_stats",
        "ScoredSlice": "pass_stats",
        "read_pass_stats": "pass_stats",
        "CheckStatistic": "check_stats",
        "StagedModel": "model_shipping",
        "stage_model": "model_shipping",
        "ship_model": "model_shipping",
        "prediction_outcomes": "prediction_checks",
        "OutputLock": "output_lock",
        "OutputLockedError": "output_lock",
        "read_predictions": "readback",
        "wide_preview": "readback",
        "lineage_of": "readback",
        "Lineage": "readback",
    },
)
