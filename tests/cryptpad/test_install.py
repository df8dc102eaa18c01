"""cryptpad after install: the main page and the client config answer, and the web app boots in
a browser (its sandbox origin, SANDBOX_DOMAIN, must answer for that)."""

import pytest


@pytest.mark.install
def test_index(http):
    r = http.get("/")
    assert r.status_code == 200, r.text[:300]
    assert "cryptpad" in r.text.lower()


@pytest.mark.install
def test_api_config(http):
    r = http.get("/api/config")
    assert r.status_code == 200, r.text[:300]
    assert "javascript" in r.headers.get("Content-Type", "")
    assert "httpUnsafeOrigin" in r.text


@pytest.mark.install
def test_drive_boots_in_browser(page):
    page.goto("/drive/")
    # The drive's iframe comes from the sandbox origin; it appearing means both origins work.
    page.wait_for_selector("iframe#sbox-iframe", timeout=60_000)
