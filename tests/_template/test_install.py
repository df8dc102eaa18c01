"""RECIPE after install: replace with what a person would check first (see docs/enroll-recipe.md).

Each test fails with "fill me in" until you replace its `fill_me_in(...)` call with the
recipe's own assertions: a copied template must not pass against an app it knows nothing of."""

import pytest

from ccci_harness import fill_me_in


@pytest.mark.install
def test_health(http):
    fill_me_in("what does the app answer when it works? (a page, an API's version, a login form)")
    r = http.get("/")
    assert r.status_code < 500, f"GET / → {r.status_code}"


@pytest.mark.install
def test_page_loads_in_browser(page):
    fill_me_in("what does a person see on the landing page? assert on its text, not its status")
    resp = page.goto("/")
    assert resp is not None and resp.status < 400
