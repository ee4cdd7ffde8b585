"""``results.jsonl``: one JSON object per finished run, durable the moment it is written.

A sweep may be killed at any instant (SIGKILL, a full disk, a power cut). Each record is
appended as one line, then flushed and ``fsync``-ed before the next run is started, so a
finished run is never lost. A kill can leave at most one half-written last line; opening the
store cuts it off, so the file stays one valid record per line. Every record carries a
``key`` derived from its configuration alone (:func:`run_key`); a rerun skips the keys that
are already present, which is how the same command resumes a sweep.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Iterator

from gradleak.errors import GradleakError
from gradleak.eval.metrics import jsonable

RESULTS = "results.jsonl"  # the file name a results folder keeps its records in


def run_key(config: dict[str, Any]) -> str:
    """A short stable name for a run: SHA-256 of its configuration as canonical JSON."""
    canonical = json.dumps(jsonable(config), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def read_records(path: str | Path) -> list[dict[str, Any]]:
    """All complete records of a results file (a torn last line from a kill is ignored)."""
    path = Path(path)
    if not path.is_file():
        raise GradleakError(f"results file {path} does not exist; run `gradleak evaluate` first")
    return list(_complete_records(path.read_bytes(), path))


def _complete_records(data: bytes, path: Path) -> Iterator[dict[str, Any]]:
    lines = data.split(b"\n")
    # Without a final newline the last line was being written when the process died.
    for number, line in enumerate(lines[:-1], start=1):
        if not line.strip():
            continue
        try:
            yield json.loads(line)
        except json.JSONDecodeError:
            raise GradleakError(f"{path} line {number} is not JSON; is this a gradleak results file?") from None


class ResultStore:
    """Appends records to a JSONL file, one durable line each, remembering which keys are done."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._cut_torn_line()
        self.records = list(_complete_records(self.path.read_bytes(), self.path)) if self.path.exists() else []
        self.done = {r["key"] for r in self.records if "key" in r}

    def _cut_torn_line(self) -> None:
        if not self.path.exists():
            return
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as handle:
                handle.truncate(data.rfind(b"\n") + 1)
                handle.flush()
                os.fsync(handle.fileno())

    def append(self, record: dict[str, Any]) -> None:
        """Write ``record`` (which must carry a ``key``) as one line and force it to disk."""
        if "key" not in record:
            raise ValueError("a result record needs a 'key'")
        line = json.dumps(jsonable(record), sort_keys=True, allow_nan=False) + "\n"
        with open(self.path, "ab") as handle:
            handle.write(line.encode())
            handle.flush()
            os.fsync(handle.fileno())
        self.records.append(record)
        self.done.add(record["key"])

    def __contains__(self, key: object) -> bool:
        return key in self.done

    def __len__(self) -> int:
        return len(self.records)
