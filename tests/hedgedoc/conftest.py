"""hedgedoc suite helpers. HedgeDoc 1.x's HTTP API (docs/content/dev/api.md upstream):
`POST /new` with a text/markdown body creates a note and redirects to it; `GET /<id>/download`
returns the markdown; `GET /status` is the realtime status JSON. Anonymous notes need
CMD_ALLOW_ANONYMOUS (true by default)."""

import secrets

import pytest


class Notes:
    def __init__(self, http):
        self.http = http

    def create(self, markdown: str) -> str:
        r = self.http.post("/new", data=markdown.encode(),
                           headers={"Content-Type": "text/markdown"})
        assert r.status_code in (301, 302, 303), f"POST /new → {r.status_code}: {r.text[:300]}"
        note = r.headers["Location"].rstrip("/").rsplit("/", 1)[-1]
        assert note and note != "new", r.headers["Location"]
        return note

    def read(self, note: str):
        return self.http.get(f"/{note}/download")


@pytest.fixture
def notes(http):
    return Notes(http)


@pytest.fixture
def marker():
    return f"cc-ci {secrets.token_hex(6)}"
