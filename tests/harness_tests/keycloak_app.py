"""The real Keycloak (the Maven Central distribution `dev/upstream` installs) on 127.0.0.1 in
dev mode with its own H2 file database, for running the keycloak suite against Keycloak itself.
Like synapse_app.py it stands in for the recipe's deployment only: the process is started,
stopped and backed up by this helper instead of abra/backupbot (the recipe's MariaDB is H2
here); what the suite talks to is the real Keycloak's HTTP API and admin console."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from app_process import AppProcess, free_port

START_LIMIT = 240  # seconds for Keycloak to answer /realms/master (JVM + H2 on 2 cores)
DEFAULT = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / \
    "cc-ci/upstream/keycloak-26.5.6/bin/kc.sh"


def keycloak_script() -> Path | None:
    p = Path(os.environ.get("CCCI_REAL_KEYCLOAK", DEFAULT))
    return p if p.exists() else None


class Keycloak:
    def __init__(self, root: Path, admin_password: str):
        script = keycloak_script()
        if script is None:
            raise RuntimeError("the real Keycloak is not installed: run `dev/upstream keycloak`")
        self.script = script
        self.root = root
        self.db_dir = root / "db"
        self.log = root / "keycloak.log"
        self.port = free_port()
        self.admin_password = admin_password
        self.process = AppProcess("keycloak", self.log)
        self.db_dir.mkdir(parents=True, exist_ok=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self):
        env = {**os.environ,
               # Used only on a first start, when the database has no admin yet.
               "KC_BOOTSTRAP_ADMIN_USERNAME": "admin",
               "KC_BOOTSTRAP_ADMIN_PASSWORD": self.admin_password}
        # kc.sh starts the JVM as its child; the process group takes both down on stop.
        self.process.start(
            ["bash", str(self.script), "start-dev", "--http-host", "127.0.0.1",
             "--http-port", str(self.port),
             "--db-url", f"jdbc:h2:file:{self.db_dir}/keycloakdb;NON_KEYWORDS=VALUE"],
            f"{self.base_url}/realms/master", START_LIMIT, self.root, env)

    def stop(self):
        self.process.stop()

    def restart(self):
        """An in-place redeploy over the same database (the upgrade, as far as one version goes)."""
        self.stop()
        self.start()

    def backup(self, dest: Path):
        """A copy of the database taken while Keycloak is stopped (H2 files are not safe to copy
        live; the recipe's hook dumps MariaDB online)."""
        self.stop()
        shutil.copytree(self.db_dir, dest)
        self.start()

    def restore(self, snapshot: Path):
        self.stop()
        shutil.rmtree(self.db_dir)
        shutil.copytree(snapshot, self.db_dir)
        self.start()

    def wipe(self):
        """Loses every piece of data (a broken upgrade); the admin is bootstrapped again."""
        self.stop()
        shutil.rmtree(self.db_dir)
        self.db_dir.mkdir()
        self.start()
