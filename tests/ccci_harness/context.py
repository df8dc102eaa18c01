"""The run as stage-runner describes it to pytest: the CCCI_* environment, read once."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

# The phase markers, in the order a full run meets them (docs/writing-tests.md).
PHASES = ("install", "pre_upgrade", "post_upgrade", "pre_backup", "after_backup", "after_restore")

# Which stage runs which phase; the recipe-tests stage runs a recipe's own tests as `install`.
STAGE_OF_PHASE = {
    "install": "install",
    "pre_upgrade": "upgrade",
    "post_upgrade": "upgrade",
    "pre_backup": "backup",
    "after_backup": "backup",
    "after_restore": "backup",
}


@dataclass(frozen=True)
class AppInfo:
    """The deployed app a test talks to."""

    recipe: str
    domain: str
    base_url: str
    stage: str
    phase: str

    def url(self, path: str = "/") -> str:
        """An absolute URL for a path relative to the app's base URL."""
        if path.startswith(("http://", "https://")):
            return path
        return self.base_url.rstrip("/") + "/" + path.lstrip("/")


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value.strip() == "":
        return default
    return value.strip().lower() not in ("0", "false", "no", "off")


@dataclass(frozen=True)
class Resolve:
    """CCCI_RESOLVE, `PATTERN=ADDRESS` (`*.ci.test=127.0.0.1`): names matching PATTERN are
    reached at ADDRESS, keeping the name for TLS (SNI, the certificate) and the Host header, as
    `curl --resolve` does. Where no DNS knows the apps' names (a test machine), this is how
    tests reach them through Traefik on 127.0.0.1."""

    pattern: str
    address: str

    @classmethod
    def parse(cls, value: str) -> "Resolve | None":
        value = value.strip()
        if not value:
            return None
        pattern, sep, address = value.partition("=")
        if not sep or not pattern.strip() or not address.strip() or ":" in address:
            raise ValueError(f"CCCI_RESOLVE must be PATTERN=ADDRESS (an IPv4 address), got {value!r}")
        return cls(pattern.strip().lower(), address.strip())

    def matches(self, host: str) -> bool:
        import fnmatch

        return fnmatch.fnmatchcase(host.lower().rstrip("."), self.pattern)


@dataclass(frozen=True)
class Context:
    """Everything the fixtures need, from the environment stage-runner sets."""

    recipe: str
    domain: str
    base_url: str
    stage: str
    phase: str
    run_dir: Path | None
    artifacts: Path | None
    abra: str
    server: str | None
    chromium: str
    tls_verify: bool
    resolve: "Resolve | None" = None

    @classmethod
    def from_env(cls, env: os._Environ | dict | None = None) -> "Context":
        e = os.environ if env is None else env
        domain = e.get("CCCI_DOMAIN", "")
        scheme_default = f"https://{domain}" if domain else ""
        run_dir = e.get("CCCI_RUN_DIR") or None
        artifacts = e.get("CCCI_ARTIFACTS") or None
        return cls(
            recipe=e.get("CCCI_RECIPE", ""),
            domain=domain,
            base_url=(e.get("CCCI_BASE_URL") or scheme_default).rstrip("/"),
            stage=e.get("CCCI_STAGE", ""),
            phase=e.get("CCCI_PHASE", ""),
            run_dir=Path(run_dir) if run_dir else None,
            artifacts=Path(artifacts) if artifacts else None,
            abra=e.get("CCCI_ABRA") or "abra",
            server=e.get("CCCI_SERVER") or None,
            chromium=e.get("CCCI_CHROMIUM") or "/usr/bin/chromium",
            tls_verify=_flag(e.get("CCCI_TLS_VERIFY"), True),
            resolve=Resolve.parse(e.get("CCCI_RESOLVE") or ""),
        )

    @property
    def deployed(self) -> bool:
        """Whether stage-runner (or a harness test) pointed us at a deployed app."""
        return bool(self.domain)

    def app(self) -> AppInfo:
        return AppInfo(self.recipe, self.domain, self.base_url, self.stage, self.phase)

    def values(self) -> dict:
        """values.json from the run dir; {} when prepare generated none."""
        if self.run_dir is None:
            return {}
        path = self.run_dir / "values.json"
        if not path.exists():
            return {}
        with path.open(encoding="utf-8") as f:
            data = json.load(f)
        if not isinstance(data, dict):
            raise ValueError(f"{path}: expected a JSON object, got {type(data).__name__}")
        return data
