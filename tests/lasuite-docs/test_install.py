"""lasuite-docs after install: the frontend config answers, the API refuses anonymous listing,
login hands over to the OIDC provider, a public document is readable, and the frontend loads."""

import pytest


@pytest.mark.install
def test_config(http):
    r = http.get("/api/v1.0/config/")
    assert r.status_code == 200, r.text[:300]
    assert isinstance(r.json(), dict)


@pytest.mark.install
def test_anonymous_user_is_refused(http):
    assert http.get("/api/v1.0/users/me/").status_code == 401


@pytest.mark.install
def test_login_redirects_to_oidc(http):
    r = http.get("/api/v1.0/authenticate/")
    assert r.status_code == 302, r.text[:300]
    assert "/protocol/openid-connect/auth" in r.headers["Location"] or \
        "authorize" in r.headers["Location"], r.headers["Location"]


@pytest.mark.install
def test_public_document_is_readable(docs, title):
    doc = docs.create_public(title)
    r = docs.get(doc)
    assert r.status_code == 200, r.text[:300]
    assert r.json()["title"] == title


@pytest.mark.install
def test_frontend_loads(page):
    resp = page.goto("/")
    assert resp is not None and resp.status < 400
    page.wait_for_load_state("networkidle", timeout=60_000)
    assert page.title()
