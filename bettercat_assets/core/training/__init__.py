"""Training: split, fit, evaluate, log to MLflow, register, and the quality gate that moves `@champion`.

Offers:
- `train`: TrainingResult, train_model, split_train_test
- `evaluation`: evaluate, top_k_accuracy
- `gate`: quality_gate, gate_metric, GateResult
"""

from bettercat_assets.core._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "TrainingResult": "train",
        "train_model": "train",
        "split_train_test": "train",
        "evaluate": "evaluation",
        "quality_gate": "gate",
        "gate_metric": "gate",
        "GateResult": "gate",
        "top_k_accuracy": "evaluation",
    },
)
