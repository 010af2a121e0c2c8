"""Preparing section 10: 1,000 clients, each with its own registered `@champion`.

Training 1,000 clients through `train_model` takes about an hour here, so `DISTINCT_FORESTS`
forests of different sizes are fitted and logged once each as the top-k pyfunc
(`store.log_compact`, as training logs it). Client i's version is then a logged model of its
own whose artifacts are a copy of forest i % DISTINCT_FORESTS's (`MLmodel` naming the new
model, the same compact form and checksum), registered as `<client>_model`, with its
`registration.json` recorded (`store.record_registration`) and the `@champion` alias set: the
server downloads, verifies and loads each client's model on its own, as it would a trained
one. Copying a logged model costs a few registry writes and a local copy (~0.1 s), where
logging the pyfunc again costs ~0.3 s on a quiet machine and much more on a busy one (MLflow
validates the input example by loading the model). A few popular clients get a second,
unpromoted version for the swap.
"""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from .workspace import Workspace, write_clients_file

DISTINCT_FORESTS = 40
FEATURES = [f"f{i}" for i in range(8)]
SWAP_VERSIONS = 3  # this many of the most popular clients get an unpromoted v2
ZIPF_EXPONENT = 1.1


def log(msg: str) -> None:
    import sys

    print(f"[bench fleet {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def client_ids(n: int) -> list[str]:
    return [f"fleet_{i:04d}" for i in range(n)]


def zipf_weights(n: int, exponent: float = ZIPF_EXPONENT, seed: int = 5) -> np.ndarray:
    """Popularity p(rank) ~ rank^-exponent, ranks shuffled over the clients."""
    ranks = np.random.default_rng(seed).permutation(n) + 1
    weights = ranks.astype(float) ** -exponent
    return weights / weights.sum()


def _forests(count: int) -> list[Any]:
    """`count` compact forests from 10 to 120 trees, 20 to 60 classes (sizes ~0.1-3 MB)."""
    import pandas as pd
    from sklearn.ensemble import RandomForestClassifier

    from bettercat_assets.core.model.forest_conversion import compact_from_sklearn

    rng = np.random.default_rng(3)
    out = []
    for i in range(count):
        classes, rows = 20 + (i * 7) % 41, 5000
        X = rng.normal(size=(rows, len(FEATURES))).astype(np.float32)
        centers = rng.normal(size=(classes, len(FEATURES)))
        y = np.argmin(((X[:, None, :] - centers[None]) ** 2).sum(-1) + rng.gumbel(size=(rows, classes)), 1)  # fmt: skip
        labels = np.array([f"cat-{c:03d}" for c in y])
        trees = 10 + (i * 13) % 111
        forest = RandomForestClassifier(n_estimators=trees, min_samples_leaf=1, n_jobs=1, random_state=i)  # fmt: skip
        out.append(compact_from_sklearn(forest.fit(pd.DataFrame(X, columns=FEATURES), labels)))  # fmt: skip
    return out


def _log_templates(forests: list[Any], workdir: Path) -> list[tuple[Any, Path]]:
    """Log each forest once as the top-k pyfunc; (its logged model, a local copy of it)."""
    import mlflow
    import pandas as pd

    from bettercat_assets.core.model import store

    example = pd.DataFrame(np.zeros((2, len(FEATURES))), columns=FEATURES)
    client = mlflow.MlflowClient()
    out = []
    for i, forest in enumerate(forests):
        info = store.log_compact(forest, example)
        logged = client.get_logged_model(info.model_id)
        local = mlflow.artifacts.download_artifacts(logged.artifact_location, dst_path=str(workdir / f"t{i}"))  # fmt: skip
        out.append((logged, Path(local)))
    return out


def _copy_logged(client: Any, experiment: str, run_id: str, template: Any, local: Path, tmp: Path) -> str:  # fmt: skip
    """A new logged model holding a copy of `template`'s artifacts; returns its id."""
    from mlflow.entities import LoggedModelStatus

    new = client.create_logged_model(experiment, name=template.name, source_run_id=run_id, tags=template.tags)  # fmt: skip
    folder = tmp / new.model_id
    shutil.copytree(local, folder)
    mlmodel = folder / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace(template.model_id, new.model_id))
    client.log_model_artifacts(new.model_id, str(folder))
    client.finalize_logged_model(new.model_id, LoggedModelStatus.READY)
    shutil.rmtree(folder)
    return new.model_id


def _register(client: Any, model_id: str, name: str) -> int:
    import mlflow

    from bettercat_assets.core.model import store

    mv = mlflow.register_model(f"models:/{model_id}", name)
    store.record_registration(SimpleNamespace(model_id=model_id), name, int(mv.version))
    return int(mv.version)


def register_fleet(ws: Workspace, n: int, distinct: int = DISTINCT_FORESTS) -> dict[str, Any]:
    """Clients file and a registered champion per client (see module docstring)."""
    import mlflow

    from bettercat_assets.core.tracking import runs as tracking

    ws.apply_env()
    ids = client_ids(n)
    write_clients_file(ws.clients_file, [{"client_id": c, "features": FEATURES} for c in ids])
    started = time.perf_counter()
    forests = _forests(distinct)
    fit_s = time.perf_counter() - started
    mlflow.set_tracking_uri(ws.settings.tracking_uri)
    client = tracking.mlflow_client(ws.settings)
    experiment = client.create_experiment("fleet-bench", artifact_location=ws.settings.artifact_root)  # fmt: skip
    popular = [ids[i] for i in np.argsort(-zipf_weights(n))[:SWAP_VERSIONS]]
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="fleet-prepare-", dir=ws.root))
    with mlflow.start_run(experiment_id=experiment) as run:
        templates = _log_templates(forests, tmp)
        for i, cid in enumerate(ids):
            for extra in range(2 if cid in popular else 1):
                template, local = templates[(i + extra) % distinct]
                model_id = _copy_logged(client, experiment, run.info.run_id, template, local, tmp)  # fmt: skip
                version = _register(client, model_id, f"{cid}_model")
                if extra == 0:
                    tracking.set_champion(client, f"{cid}_model", version)
            if i % 100 == 0:
                log(f"registered {i + 1}/{n} clients")
    shutil.rmtree(tmp, ignore_errors=True)
    sizes = [f.nbytes / 2**20 for f in forests]
    return {
        "clients": n,
        "distinct_forests": distinct,
        "fit_s": round(fit_s, 1),
        "register_s": round(time.perf_counter() - started, 1),
        "model_mb": {
            "min": round(min(sizes), 2),
            "mean": round(float(np.mean(sizes)), 2),
            "max": round(max(sizes), 2),
        },  # fmt: skip
        "all_models_mb": round(sum(sizes[i % distinct] for i in range(n)), 0),
        "popular": popular,
    }
