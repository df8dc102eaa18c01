"""keycloak after install: the master realm answers, the admin's password grant gives a JWT
issued by this host for admin-cli, and the admin console logs in through the browser."""

import pytest

from ccci_harness.browser import steady_steps


@pytest.mark.install
def test_master_realm(http, app):
    r = http.get("/realms/master")
    assert r.status_code == 200, r.text[:300]
    body = r.json()
    assert body["realm"] == "master" and body["public_key"], body


@pytest.mark.install
def test_password_grant_gives_admin_cli_jwt(admin, app):
    claims = admin.claims(admin.token())
    assert claims["iss"] == f"{app.base_url}/realms/master", claims["iss"]
    assert claims["azp"] == "admin-cli"
    assert claims["typ"] == "Bearer"


@pytest.mark.install
def test_wrong_password_is_refused(http, admin_user):
    r = http.post("/realms/master/protocol/openid-connect/token", data={
        "grant_type": "password", "client_id": "admin-cli",
        "username": admin_user, "password": "not-the-password"})
    assert r.status_code == 401 and r.json()["error"] == "invalid_grant"


@pytest.mark.install
def test_admin_console_login_in_browser(page, admin_user, values):
    def log_in(page):
        page.goto("/admin/master/console/")
        page.locator("#username").fill(admin_user)
        page.locator("#password").fill(values["admin_password"])
        page.locator("#kc-login").click()
        page.wait_for_url("**/admin/master/console/**", timeout=60_000)

    steady_steps(page, log_in)
    assert "/login-actions/" not in page.url
