"""The (client, date) write lock of the scoring output and the sqlite store lock (filelock)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from bettercat_assets.core.config.settings import TrackingSettings
from bettercat_assets.core.scoring.output_lock import (
    OutputLockedError,
    acquire_output_lock,
    lock_path,
    output_lock,
)
from bettercat_assets.core.tracking import runs as tracking


def _final(tmp_path: Path) -> Path:
    return tmp_path / "client_id=acme" / "date=2026-05-04"


def test_second_writer_fails_at_once_naming_client_date_and_lock(tmp_path):
    final = _final(tmp_path)
    with output_lock("acme", final) as path:
        assert path == final.parent / "_lock-date=2026-05-04" and path.exists()
        with pytest.raises(OutputLockedError) as err:
            acquire_output_lock("acme", final)
    assert str(err.value) == (
        f"client 'acme': predictions for 2026-05-04 are being written by another run (lock {path})"
    )
    # Released and removed: the next writer gets it, nothing is left beside the output.
    assert list(final.parent.iterdir()) == []
    acquire_output_lock("acme", final).release()


def test_other_dates_and_clients_are_independent(tmp_path):
    final = _final(tmp_path)
    with output_lock("acme", final):
        acquire_output_lock("acme", final.with_name("date=2026-05-05")).release()
        acquire_output_lock("beta", tmp_path / "client_id=beta" / final.name).release()


def test_a_waiting_writer_gets_the_lock_after_the_holder_removed_the_file(tmp_path):
    """The holder unlinks the lock file before unlocking; a writer that opened the old file
    meanwhile must still exclude a third one (it re-opens the path once it has the lock)."""
    final = _final(tmp_path)
    first = acquire_output_lock("acme", final)
    got: dict[str, object] = {}
    waiter = threading.Thread(
        target=lambda: got.update(lock=acquire_output_lock("acme", final, 30))
    )
    waiter.start()
    waiter.join(0.5)
    assert waiter.is_alive(), "the second writer did not wait"
    first.release()
    waiter.join(30)
    second = got["lock"]
    assert lock_path(final).exists()
    with pytest.raises(OutputLockedError):
        acquire_output_lock("acme", final)
    second.release()
    assert not lock_path(final).exists()


def test_a_crashed_writers_lock_file_does_not_block(tmp_path):
    """SIGKILL leaves the file but not the flock: the next writer takes it and removes it."""
    final = _final(tmp_path)
    final.parent.mkdir(parents=True)
    lock_path(final).touch()
    acquire_output_lock("acme", final).release()
    assert not lock_path(final).exists()


def test_store_lock_is_reentrant_per_thread_and_excludes_other_threads(tmp_path):
    settings = TrackingSettings(tracking_uri=f"sqlite:///{tmp_path / 'new' / 'mlflow.db'}")
    order: list[str] = []

    def other() -> None:
        with tracking.store_lock(settings):
            order.append("other")

    with tracking.store_lock(settings), tracking.store_lock(settings):
        thread = threading.Thread(target=other)
        thread.start()
        thread.join(0.5)
        order.append("holder")
    thread.join(30)
    assert order == ["holder", "other"]
    assert (tmp_path / "new" / "mlflow.db.lock").exists()


def test_store_lock_is_a_no_op_for_a_server(tmp_path):
    with tracking.store_lock(TrackingSettings(tracking_uri="http://127.0.0.1:1")):
        pass
    assert list(tmp_path.iterdir()) == []
