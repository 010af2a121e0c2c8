"""Per-client statistics made in the scoring pass and saved beside the predictions.

The checks (and any other per-client summary, such as a monitoring profile) need numbers about
what each client's scoring read and wrote. They are made where the scores are made: each Spark
task folds every client slice it scores into one state per `PassStatistic`, and when its last
batch is done writes those states as one small Arrow file,
`<stats_dir>/<partition>-<attempt>.arrow`, before Spark commits the task's parquet.

Spark Connect has no accumulators; a file per task attempt works under classic Spark and
Connect alike. A retried or speculative attempt recomputes the same input split, so its states
equal the first attempt's: the driver keeps one file per partition. Nothing here depends on a
particular statistic: a new one (a class with `name`, `observe`, `merge`) is passed to the pass
beside the others, and its merged states come back keyed by its name.

States are `dict[str, np.ndarray]` (numbers, or fixed-width strings): no pickling anywhere.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.ipc as ipc

State = dict[str, np.ndarray]
STATS_SUFFIX = ".arrow"
_STATS_SCHEMA = pa.schema(
    [
        ("client_id", pa.string()),
        ("statistic", pa.string()),
        ("key", pa.string()),
        ("dtype", pa.string()),
        ("shape", pa.list_(pa.int64())),
        ("data", pa.large_binary()),
    ]
)


@dataclass(frozen=True)
class ScoredSlice:
    """One client's rows of one Arrow batch, and what the scoring made of them."""

    client_id: str
    #: the input's product ids (one per input row)
    product_ids: pd.Series
    #: the model's features, float32 (rows, features), in the model's feature order
    features: np.ndarray
    #: class probabilities, float64 (rows, classes)
    proba: np.ndarray
    #: the output rows as written: product_id, pred_label, pred_score, rank, model_version
    output: pd.DataFrame
    #: rows per product the scorer makes: min(k, classes)
    rows_per_product: int
    #: the text and categorical cells by feature name (object arrays, None = missing)
    strings: Mapping[str, np.ndarray] = field(default_factory=dict)
    #: a text column's fitted word vocabulary and lower-casing, None without a word block
    vocabulary: Callable[[str], tuple[Container[str], bool] | None] | None = None
    #: the scorer's `top_k_indices(proba, k)` (rows, min(k, classes)), best first; None: unknown
    best: np.ndarray | None = None


class PassStatistic(Protocol):
    """A per-client summary folded over the slices of a scoring pass."""

    #: unique among the statistics of one pass
    name: str

    def observe(self, scored: ScoredSlice) -> State:
        """The state of one slice."""
        ...

    def merge(self, states: Sequence[State]) -> State:
        """One state from many (of one client): associative, so partial merges compose."""
        ...


class TaskStats:
    """What one Spark task folds while it scores: client -> statistic -> pending states."""

    #: pending states merged into one whenever this many have piled up
    FOLD_EVERY = 16

    def __init__(self, statistics: Sequence[PassStatistic]) -> None:
        self._statistics = {s.name: s for s in statistics}
        if len(self._statistics) != len(statistics):
            raise ValueError(f"pass statistics need distinct names: {[s.name for s in statistics]}")
        self._pending: dict[tuple[str, str], list[State]] = {}

    def observe(self, scored: ScoredSlice) -> None:
        for name, statistic in self._statistics.items():
            pending = self._pending.setdefault((scored.client_id, name), [])
            pending.append(statistic.observe(scored))
            if len(pending) >= self.FOLD_EVERY:
                pending[:] = [statistic.merge(pending)]

    def merged(self) -> dict[tuple[str, str], State]:
        return {
            (cid, name): self._statistics[name].merge(states)
            for (cid, name), states in self._pending.items()
        }

    def write(self, stats_dir: str) -> None:
        """Write this task's states, named after its partition and attempt (written aside,
        then renamed: a reader never sees half a file)."""
        from pyspark import TaskContext  # the worker's own task

        context = TaskContext.get()
        name = f"{context.partitionId()}-{context.attemptNumber()}" if context else uuid.uuid4().hex
        write_states(Path(stats_dir) / f"{name}{STATS_SUFFIX}", self.merged())


def write_states(path: Path, states: Mapping[tuple[str, str], State]) -> None:
    """Write (client, statistic) -> state as one Arrow IPC file."""
    for (cid, name), state in states.items():
        for key, array in state.items():
            if array.dtype.kind not in "biufU":  # raw bytes of objects would be pointers
                raise TypeError(f"pass statistic {name!r} ({cid}): {key} has dtype {array.dtype}")
    rows = [
        (cid, name, key, array.dtype.str, list(array.shape), np.ascontiguousarray(array).tobytes())
        for (cid, name), state in states.items()
        for key, array in state.items()
    ]
    table = pa.Table.from_pylist(
        [dict(zip(_STATS_SCHEMA.names, row, strict=True)) for row in rows], schema=_STATS_SCHEMA
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    aside = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    with pa.OSFile(str(aside), "wb") as sink, ipc.new_file(sink, _STATS_SCHEMA) as writer:
        writer.write_table(table)
    os.replace(aside, path)


def read_states(path: Path) -> dict[tuple[str, str], State]:
    """The states one task wrote."""
    with pa.memory_map(str(path)) as source:
        table = ipc.open_file(source).read_all()
    states: dict[tuple[str, str], State] = {}
    for row in table.to_pylist():
        array = np.frombuffer(row["data"], dtype=np.dtype(row["dtype"])).reshape(row["shape"])
        states.setdefault((row["client_id"], row["statistic"]), {})[row["key"]] = array
    return states


def task_files(stats_dir: Path) -> list[Path]:
    """One file per partition: the first attempt that finished (all attempts are equal)."""
    chosen: dict[str, tuple[int, Path]] = {}
    for path in stats_dir.glob(f"*{STATS_SUFFIX}"):
        partition, _, attempt = path.stem.partition("-")
        number = int(attempt) if attempt.isdigit() else 0
        if partition not in chosen or number < chosen[partition][0]:
            chosen[partition] = (number, path)
    return [path for _, path in sorted(chosen.values(), key=lambda item: str(item[1]))]


def read_pass_stats(
    stats_dirs: Iterable[Path], statistics: Sequence[PassStatistic]
) -> dict[str, dict[str, State]]:
    """client -> statistic name -> its state merged over every task of the pass."""
    by_name = {s.name: s for s in statistics}
    pending: dict[tuple[str, str], list[State]] = {}
    for stats_dir in stats_dirs:
        for path in task_files(stats_dir):
            for key, state in read_states(path).items():
                if key[1] in by_name:
                    pending.setdefault(key, []).append(state)
    merged: dict[str, dict[str, State]] = {}
    for (cid, name), states in pending.items():
        merged.setdefault(cid, {})[name] = by_name[name].merge(states)
    return merged
