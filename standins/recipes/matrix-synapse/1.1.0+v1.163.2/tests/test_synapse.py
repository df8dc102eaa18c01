"""The recipe's own checks, run by cc-ci's recipe-tests stage against the live app (its `http`
fixture): the Synapse this release pins is what serves, and password login is offered."""


def test_the_pinned_synapse_serves(http):
    r = http.get("/_matrix/federation/v1/version")
    assert r.status_code == 200, r.text[:300]
    assert r.json()["server"] == {"name": "Synapse", "version": "1.163.2"}


def test_password_login_is_offered(http):
    r = http.get("/_matrix/client/v3/login")
    assert r.status_code == 200, r.text[:300]
    assert "m.login.password" in [f["type"] for f in r.json()["flows"]]
