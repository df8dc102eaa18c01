"""cryptpad suite helpers: a marker file in the server's data volume (pads are client-side
encrypted, so the server's storage can only be checked as files)."""

import secrets

import pytest

DATA = "/cryptpad/data"  # the recipe's data volume target; check against its compose.yml


@pytest.fixture
def marker():
    return f"cc-ci {secrets.token_hex(6)}"


@pytest.fixture
def data_file(app_run):
    class DataFile:
        def write(self, name, text):
            app_run("app", "sh", "-c", 'printf %s "$1" > "$2"', "sh", text, f"{DATA}/{name}",
                    check=True)

        def read(self, name):
            r = app_run("app", "cat", f"{DATA}/{name}")
            return r.stdout if r.ok else None

    return DataFile()
