"""RECIPE after install: replace with what a person would check first (see docs/enroll-recipe.md)."""

import pytest


@pytest.mark.install
def test_health(http):
    r = http.get("/")
    assert r.status_code < 500, f"GET / → {r.status_code}"


@pytest.mark.install
def test_page_loads_in_browser(page):
    resp = page.goto("/")
    assert resp is not None and resp.status < 400
