"""One writer at a time per (client, date): a `filelock` lock file beside the output.

Scoring writes each client's output into a staging folder and swaps it in by renames. Two runs
for the same client and date must not interleave: one run's leftover cleanup would delete what
the other's swap set aside, and the two swaps would race (the second rename fails on a folder
the first just put in place). The lock `_lock-date=<day>` sits in
the client's output folder (on the storage the output lives on, so writers on other hosts see
it too; readers skip names starting with `_`). A second writer fails at once with a clear
error rather than waiting: the run holding the lock produces the same output anyway.

The lock is a kernel `flock` held through an open descriptor: a writer killed with SIGKILL
releases it with its process, so a crashed run never blocks the next one (its lock file stays,
empty, until the next writer of that date is done). The holder unlinks the lock file *before*
unlocking it; a writer that opened the old file and then gets the lock sees it unlinked and
tries again on the path (`filelock` checks the link count after locking), so removing it does
not let two writers in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from bettercat_assets.core.config.errors import BettercatError

LOCK_PREFIX = "_lock-"


class OutputLockedError(BettercatError):
    """Another run is writing the same client's predictions for the same date."""


def lock_path(final: Path) -> Path:
    """The lock file of an output folder `.../client_id=<id>/date=<day>`."""
    return final.parent / f"{LOCK_PREFIX}{final.name}"


@dataclass
class OutputLock:
    """A held (client, date) write lock."""

    path: Path
    lock: FileLock

    def release(self) -> None:
        """Remove the lock file, then unlock: nothing is left beside the output."""
        if not self.lock.is_locked:
            return
        with suppress(FileNotFoundError):
            self.path.unlink()
        self.lock.release()


def acquire_output_lock(client_id: str, final: Path, timeout: float = 0) -> OutputLock:
    """Take the (client, date) write lock of `final`; the caller must `release()` it.

    `timeout` 0 (the default) tries once; a positive value waits that many seconds. Raises
    OutputLockedError naming the client, the date and the lock file when another run holds it.
    """
    path = lock_path(final)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=timeout, thread_local=False, blocking=timeout != 0)
    try:
        lock.acquire()
    except Timeout:
        day = final.name.removeprefix("date=")
        raise OutputLockedError(
            f"client '{client_id}': predictions for {day} are being written by another run "
            f"(lock {path})"
        ) from None
    return OutputLock(path, lock)


@contextmanager
def output_lock(client_id: str, final: Path, timeout: float = 0) -> Iterator[Path]:
    """`acquire_output_lock` for the body of a `with`; yields the lock file's path."""
    lock = acquire_output_lock(client_id, final, timeout)
    try:
        yield lock.path
    finally:
        lock.release()
