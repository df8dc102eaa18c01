"""lasuite-docs suite helpers. Docs' backend is Django REST under /api/v1.0/ (impress
src/backend/core/urls.py); logging in needs the OIDC provider, so data is seeded with the
backend's own `manage.py shell` through `abra app run` and read over the public API
(a document with link_reach=public is readable anonymously)."""

import secrets

import pytest

BACKEND = "backend"  # the recipe's Django service; check against its compose.yml

SEED = (
    "from core import models;"
    "d = models.Document.add_root(title={title!r}, link_reach='public', link_role='reader');"
    "print(d.id)"
)


class Docs:
    def __init__(self, http, app_run):
        self.http = http
        self.app_run = app_run

    def create_public(self, title: str) -> str:
        r = self.app_run(BACKEND, "python", "manage.py", "shell", "-c",
                         SEED.format(title=title), check=True)
        return r.stdout.strip().splitlines()[-1]

    def delete(self, doc_id: str):
        self.app_run(BACKEND, "python", "manage.py", "shell", "-c",
                     f"from core import models; models.Document.objects.filter(id={doc_id!r})"
                     ".delete()", check=True)

    def get(self, doc_id: str):
        return self.http.get(f"/api/v1.0/documents/{doc_id}/")


@pytest.fixture
def docs(http, app_run):
    return Docs(http, app_run)


@pytest.fixture
def title():
    return f"cc-ci {secrets.token_hex(6)}"
