"""Client entries that cannot become a partition (not a mapping, unsafe or duplicated id)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

CLIENT_ID_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"


@dataclass(frozen=True)
class EntryProblem:
    """A client entry that cannot be used, and why (one line per error, without the file)."""

    who: str
    errors: tuple[str, ...]
    #: The partition this entry keeps (a safe, unique id), or None when it is left out.
    partition: str | None

    def lines(self, path: Path) -> list[str]:
        """One self-contained line per error: `<file>: client 'B': <key>: <message>`."""
        return [f"{path}: {self.who}: {error}" for error in self.errors]


def _safe_id(raw: Any) -> str | None:
    """The entry's client_id if it is a safe identifier, else None."""
    cid = raw.get("client_id") if isinstance(raw, dict) else None
    return cid if isinstance(cid, str) and re.fullmatch(CLIENT_ID_PATTERN, cid) else None


def _left_out(index: int, raw: Any, ids: list[str | None]) -> EntryProblem | None:
    """An entry whose id cannot name a partition (not a mapping, unsafe, duplicated), or None."""
    cid = _safe_id(raw)
    if cid is not None:
        copies = [i + 1 for i, other in enumerate(ids) if other == cid]
        if len(copies) == 1:
            return None
        where = ", ".join(f"#{n}" for n in copies)
        error = (
            f"client_id: duplicate client_id '{cid}' (entries {where}); every copy is left out "
            "of the partitions until one entry remains"
        )
        return EntryProblem(f"client '{cid}'", (error,), None)
    if not isinstance(raw, dict):
        error = (
            f"expected a mapping with client_id and features, got {raw!r}; "
            "left out of the partitions"
        )
        return EntryProblem(f"client #{index + 1}", (error,), None)
    if "client_id" not in raw:
        return EntryProblem(
            f"client #{index + 1}", ("client_id: Field required; left out of the partitions",), None
        )
    error = (
        f"client_id: {raw['client_id']!r} is not a safe identifier (allowed: "
        f"{CLIENT_ID_PATTERN}); left out of the partitions"
    )
    return EntryProblem(f"client '{raw['client_id']}'", (error,), None)
