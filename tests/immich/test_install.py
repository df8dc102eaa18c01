"""immich after install: the server answers, the admin signs up and logs in, an uploaded photo
gets a thumbnail and counts in the statistics, and the web login works in a browser."""

import pytest

from ccci_harness.browser import steady_steps


@pytest.mark.install
def test_ping_and_version(http):
    r = http.get("/api/server/ping")
    assert r.status_code == 200 and r.json() == {"res": "pong"}, r.text[:300]
    v = http.get("/api/server/version").json()
    assert {"major", "minor", "patch"} <= set(v), v


@pytest.mark.install
def test_upload_gets_thumbnail(immich):
    before = immich.statistics()["images"]
    asset = immich.upload(seed=1)
    info = immich.asset(asset)
    assert info.status_code == 200 and info.json()["type"] == "IMAGE", info.text[:300]
    thumb = immich.thumbnail(asset)
    assert thumb.headers.get("Content-Type", "").startswith("image/")
    assert immich.statistics()["images"] == before + 1


@pytest.mark.install
def test_web_login(page, immich, values):
    immich.token()  # the admin exists

    def log_in(page):
        page.goto("/auth/login")
        page.locator("input#email").fill("ccci-admin@example.org")
        page.locator("input#password").fill(values["admin_password"])
        page.locator("button[type=submit]").click()
        page.wait_for_url("**/photos**", timeout=60_000)

    steady_steps(page, log_in)
