"""custom-html after install: nginx answers, serves what is in its content volume byte for byte
with the right type, and a browser renders a page put there."""

import pytest


@pytest.mark.install
def test_index_is_served(http):
    r = http.get("/")
    assert r.status_code == 200, f"GET / → {r.status_code}: {r.text[:300]}"
    assert r.headers.get("Content-Type", "").startswith("text/html")
    assert "<html" in r.text.lower(), f"GET / is not an HTML page: {r.text[:300]!r}"


@pytest.mark.install
def test_volume_file_round_trips(http, put_file, token):
    html = f"<!DOCTYPE html><html><body><p>ccci {token} – ünïcødé</p></body></html>\n"
    put_file(f"ccci-{token}.html", html)
    r = http.get(f"/ccci-{token}.html")
    assert r.status_code == 200, f"{r.status_code}: {r.text[:300]}"
    assert r.content == html.encode("utf-8")
    assert r.headers.get("Content-Type", "").startswith("text/html")

    text = f"plain {token}\n"
    put_file(f"ccci-{token}.txt", text)
    r = http.get(f"/ccci-{token}.txt")
    assert r.status_code == 200
    assert r.content == text.encode()
    assert r.headers.get("Content-Type", "").startswith("text/plain")


@pytest.mark.install
def test_browser_renders_page(page, put_file, token):
    put_file(
        f"page-{token}.html",
        f"<!DOCTYPE html><html><head><title>cc-ci {token}</title></head>"
        f"<body><h1 id='t'>Hello from {token}</h1></body></html>",
    )
    resp = page.goto(f"/page-{token}.html")
    assert resp is not None and resp.status == 200
    assert page.title() == f"cc-ci {token}"
    assert page.locator("#t").inner_text() == f"Hello from {token}"
