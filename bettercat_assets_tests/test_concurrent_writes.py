"""Two `bettercat predict` for the same client and date at once (real CLI processes).

Exactly one writes: the other fails at once with one clear `error:` line naming the lock. A
reader polling the output folder meanwhile only ever sees a complete output, the previous one
or the new one, and nothing is left beside the output afterwards.
"""

from __future__ import annotations

import json
import subprocess
import threading
from datetime import date
from pathlib import Path

import pandas as pd
import pyarrow.dataset as ds
import pytest

from bettercat_assets_tests.process_support import stop_process_group
from bettercat_assets_tests.reliability_support import (
    BIN,
    REPO,
    subprocess_env,
    tree_digest,
    write_clients_file,
)

pytestmark = pytest.mark.integration

DAY = date(2026, 3, 2)
CID = "lock_score"
OTHER = "lock_other"
#: Trained on a small sample; the scoring file is that client's products repeated under new
#: ids, enough that the writer holding the lock is still scoring when the other one arrives.
PRODUCTS, COPIES = 1_000, 40


@pytest.fixture(scope="module")
def lock_world(tmp_path_factory, tracking_settings):
    from bettercat_assets.core.config.clients import load_clients
    from bettercat_assets.core.config.paths import DataLayout
    from bettercat_assets.core.data.generate import generate_client_data
    from bettercat_assets.core.training.train import train_model

    root = tmp_path_factory.mktemp("locks")
    clients_file = write_clients_file(
        root / "clients.yaml",
        [
            f"{{client_id: {CID}, features: [price, weight_g], "
            f"sample_data: {{products: {PRODUCTS}, categories: 6}}}}",
            f"{{client_id: {OTHER}, features: [price, rating], "
            "sample_data: {products: 300, categories: 4, noise: 0.2}}",
        ],
    )
    registry = load_clients(clients_file)
    layout = DataLayout(root / "data")
    for cid in (CID, OTHER):
        generate_client_data(registry.get(cid), layout, seed=5)
        train_model(registry.get(cid), DAY, layout=layout, settings=tracking_settings)
    path = layout.predict_file(CID)
    sample, ids = pd.read_csv(path), registry.get(CID).id_column
    copies = [sample.assign(**{ids: sample[ids] + f"-{i}"}) for i in range(COPIES)]
    pd.concat(copies).to_csv(path, index=False, compression="gzip")
    return registry, layout


def _read_complete(final: Path) -> tuple[str, int] | None:
    """(scored_at, rows) of the output as a reader sees it, None when it vanished mid-read
    (renamed away by a swap: a reader holding it open would keep reading the old files)."""
    try:
        lineage = json.loads((final / "_lineage.json").read_text())
        rows = ds.dataset(final, format="parquet").count_rows()
    except FileNotFoundError:
        return None
    return lineage["scored_at"], rows


class Poller(threading.Thread):
    """Reads the output folder over and over until stopped; records what it saw."""

    def __init__(self, final: Path) -> None:
        super().__init__(daemon=True)
        self.final, self.seen, self.stop = final, [], threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            if self.final.exists():
                seen = _read_complete(self.final)
                if seen is not None:
                    self.seen.append(seen)
            self.stop.wait(0.02)


def _frame(path: Path) -> pd.DataFrame:
    table = ds.dataset(path, format="parquet").to_table().to_pandas()
    return table.sort_values(["product_id", "rank"]).reset_index(drop=True)


def test_two_predicts_for_one_client_and_date_one_writes_the_other_fails_clearly(
    lock_world, spark, tracking_settings
):
    from bettercat_assets.core.scoring.spark_pass import predict_categories

    registry, layout = lock_world
    cfg = registry.get(CID)
    previous = predict_categories(cfg, DAY, spark=spark, layout=layout, settings=tracking_settings)
    final, expected_rows = previous.output_dir, previous.rows_written
    old_scored_at, _ = _read_complete(final)
    old_frame = _frame(final)

    poller = Poller(final)
    poller.start()
    env = subprocess_env(
        BETTERCAT_CLIENTS_FILE=str(registry.path),
        DATA_PREFIX=str(layout.prefix),
        SPARK_MASTER="local[1]",
    )
    argv = [str(BIN / "bettercat"), "predict", "--client-id", CID, "--inference-date", str(DAY)]
    procs = [
        subprocess.Popen(
            argv,
            env=env,
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, JVM included, for the cleanup
        )
        for _ in range(2)
    ]
    try:
        streams = [p.communicate(timeout=300) for p in procs]
        outcomes = [(p.returncode, out, err) for p, (out, err) in zip(procs, streams, strict=True)]
    finally:
        poller.stop.set()
        poller.join(30)
        for proc in procs:
            stop_process_group(proc, grace=5)

    codes = sorted(code for code, _, _ in outcomes)
    assert codes == [0, 2], outcomes
    [(_, out, err)] = [o for o in outcomes if o[0] == 2]
    assert "Traceback" not in err and out == "", (out, err)
    [line] = [line for line in err.splitlines() if line.startswith("error:")]
    assert line == (
        f"error: client '{CID}': predictions for {DAY} are being written by another run "
        f"(lock {final.parent / f'_lock-date={DAY}'})"
    )

    # The winner's output survived whole; nothing but the output is left beside it.
    new_scored_at, rows = _read_complete(final)
    assert new_scored_at != old_scored_at and rows == expected_rows
    pd.testing.assert_frame_equal(_frame(final), old_frame)  # same model, same input
    assert sorted(p.name for p in final.parent.iterdir()) == [final.name]

    # Every read in between saw a complete output: the previous one or the winner's.
    assert poller.seen, "the reader never saw the output"
    assert {at for at, _ in poller.seen} <= {old_scored_at, new_scored_at}, poller.seen
    assert {n for _, n in poller.seen} == {expected_rows}, poller.seen


def test_a_locked_client_fails_alone_in_a_range_run(lock_world, spark, tracking_settings):
    """Scoring several clients in one run: the one whose output another writer holds gets
    its own error and keeps its output; the others are scored."""
    from bettercat_assets.core.scoring.output_lock import OutputLockedError, output_lock
    from bettercat_assets.core.scoring.spark_pass import (
        ScoringRequest,
        ScoringResult,
        score_clients,
    )

    registry, layout = lock_world
    final = layout.predictions_dir(CID, DAY)
    before = tree_digest(final)
    requests = [ScoringRequest(registry.get(cid)) for cid in (CID, OTHER)]
    with output_lock(CID, final) as held:
        outcomes = score_clients(
            requests, DAY, spark=spark, layout=layout, settings=tracking_settings
        )
        assert held.exists()  # still ours: the run released only its own locks
    assert isinstance(outcomes[CID], OutputLockedError), outcomes[CID]
    assert str(held) in str(outcomes[CID])
    assert tree_digest(final) == before
    assert isinstance(outcomes[OTHER], ScoringResult), outcomes[OTHER]
    assert outcomes[OTHER].rows_written > 0
    other_root = layout.predictions_root(OTHER)
    assert sorted(p.name for p in other_root.iterdir()) == [f"date={DAY}"]
