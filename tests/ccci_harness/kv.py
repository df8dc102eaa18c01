"""A small key-value store kept in the run dir, so a phase can leave data for a later one
(seeded before an upgrade or a backup, checked after it). Each write rewrites the file
atomically; values must be JSON-serialisable."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

_MISSING = object()


class KV:
    def __init__(self, path: Path):
        self.path = Path(path)

    def _load(self) -> dict:
        try:
            with self.path.open(encoding="utf-8") as f:
                data = json.load(f)
        except FileNotFoundError:
            return {}
        if not isinstance(data, dict):
            raise ValueError(f"{self.path}: expected a JSON object")
        return data

    def _save(self, data: dict) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".kv-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except BaseException:
            try:
                os.unlink(tmp)
            except FileNotFoundError:
                pass
            raise

    def get(self, key: str, default: Any = None) -> Any:
        return self._load().get(key, default)

    def __getitem__(self, key: str) -> Any:
        value = self._load().get(key, _MISSING)
        if value is _MISSING:
            raise KeyError(
                f"kv has no {key!r}: the phase that seeds it did not run or failed "
                f"(store {self.path})"
            )
        return value

    def __contains__(self, key: str) -> bool:
        return key in self._load()

    def __setitem__(self, key: str, value: Any) -> None:
        self.set(key, value)

    def set(self, key: str, value: Any) -> None:
        data = self._load()
        data[key] = value
        self._save(data)

    def delete(self, key: str) -> None:
        data = self._load()
        if data.pop(key, _MISSING) is not _MISSING:
            self._save(data)

    def all(self) -> dict:
        return self._load()
