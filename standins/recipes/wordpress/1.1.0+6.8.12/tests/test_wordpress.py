"""The recipe's own checks, run by cc-ci's recipe-tests stage against the live app (its `http`
fixture): the WordPress this release pins is what serves, and its REST API is on."""

import re


def test_the_pinned_wordpress_serves(http):
    r = http.get("/wp-login.php")
    assert r.status_code == 200, r.text[:300]
    # WordPress versions its own stylesheets with its version (before the installer has run,
    # the login page redirects to the installer's, which does the same).
    assert re.search(r"ver=6\.8\.12", r.text), r.text[:500]


def test_the_rest_api_is_on(http):
    r = http.get("/", params={"rest_route": "/"})
    assert r.status_code == 200, r.text[:300]
    assert "wp/v2" in r.json()["namespaces"]
