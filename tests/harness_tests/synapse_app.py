"""A real Synapse (from PyPI, in this venv) on 127.0.0.1 with SQLite, for running the
matrix-synapse suite here without Docker. It stands in for the recipe's deployment only where
this machine cannot: the process is started, stopped and backed up by this helper instead of
abra/backupbot; what the suite talks to is the real Synapse's HTTP API."""

from __future__ import annotations

import secrets
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

from app_process import AppProcess, free_port

START_LIMIT = 90  # seconds for Synapse to answer /_matrix/client/versions


def synapse_available() -> bool:
    p = subprocess.run([sys.executable, "-c", "import synapse.app.homeserver"],
                       capture_output=True, timeout=60)
    return p.returncode == 0


class Synapse:
    def __init__(self, root: Path, server_name: str):
        self.root = root
        self.data = root / "data"
        self.server_name = server_name
        self.port = free_port()
        self.config = root / "homeserver.yaml"
        self.log = root / "synapse.log"
        self.process = AppProcess("synapse", self.log)
        self.data.mkdir(parents=True, exist_ok=True)
        self._write_config()
        subprocess.run([sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config),
                        "--generate-keys"], check=True, capture_output=True, timeout=120,
                       cwd=self.root)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def db(self) -> Path:
        return self.data / "homeserver.db"

    def _write_config(self):
        d = self.data
        # The matrix-synapse recipe's ENABLE_REGISTRATION=true, as cc-ci sets it for its
        # tests (recipes.md); registration without e-mail needs the explicit opt-in below.
        self.config.write_text(f"""
server_name: "{self.server_name}"
pid_file: "{self.root}/homeserver.pid"
listeners:
  - port: {self.port}
    bind_addresses: ["127.0.0.1"]
    type: http
    tls: false
    x_forwarded: true
    resources:
      - names: [client, federation]
        compress: false
database:
  name: sqlite3
  args:
    database: "{d}/homeserver.db"
media_store_path: "{d}/media_store"
signing_key_path: "{d}/signing.key"
enable_registration: true
enable_registration_without_verification: true
report_stats: false
trusted_key_servers: []
suppress_key_server_warning: true
macaroon_secret_key: "{secrets.token_urlsafe(32)}"
form_secret: "{secrets.token_urlsafe(32)}"
registration_shared_secret: "{secrets.token_urlsafe(32)}"
""")

    def start(self):
        self.process.start([sys.executable, "-m", "synapse.app.homeserver", "-c", str(self.config)],
                           f"{self.base_url}/_matrix/client/versions", START_LIMIT, self.root)

    def stop(self):
        self.process.stop()

    def restart(self):
        """An in-place redeploy over the same data (the upgrade, as far as one version goes)."""
        self.stop()
        self.start()

    def backup(self, dest: Path):
        """A consistent online copy of the database (what the recipe's pg_dump hook gives on a
        host) plus the media store."""
        dest.mkdir(parents=True)
        src = sqlite3.connect(self.db)
        dst = sqlite3.connect(dest / "homeserver.db")
        try:
            src.backup(dst)
        finally:
            dst.close()
            src.close()
        if (self.data / "media_store").exists():
            shutil.copytree(self.data / "media_store", dest / "media_store")

    def restore(self, snapshot: Path):
        """Puts the snapshot's database back; Synapse is restarted around it, as it reconnects
        to a re-created database on a host."""
        self.stop()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        shutil.copy2(snapshot / "homeserver.db", self.db)
        if (snapshot / "media_store").exists():
            shutil.rmtree(self.data / "media_store", ignore_errors=True)
            shutil.copytree(snapshot / "media_store", self.data / "media_store")
        self.start()

    def wipe(self):
        """Loses every piece of data (a broken upgrade)."""
        self.stop()
        for suffix in ("", "-wal", "-shm", "-journal"):
            Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        self.start()
