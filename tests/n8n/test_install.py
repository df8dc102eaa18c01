"""n8n after install: ready, the owner set up and logged in (a wrong password refused), a
workflow created and read back, and the editor's sign-in page working in a browser."""

import secrets

import pytest

from ccci_harness.browser import steady_steps


@pytest.mark.install
def test_ready(http):
    r = http.get("/healthz/readiness")
    assert r.status_code == 200 and r.json() == {"status": "ok"}, r.text[:300]


@pytest.mark.install
def test_owner_logs_in_and_a_wrong_password_is_refused(n8n):
    n8n.owner()
    r = n8n.http.get("/rest/login")
    assert r.status_code == 200 and r.json()["data"]["email"] == "owner@cc-ci.test", r.text[:300]
    n8n.http.cookies.clear()
    r = n8n.login(n8n.password + "-wrong")
    assert r.status_code == 401, r.text[:300]
    assert n8n.http.get("/rest/workflows").status_code == 401


@pytest.mark.install
def test_a_workflow_is_created_and_read_back(n8n):
    n8n.owner()
    name = f"cc-ci install {secrets.token_hex(6)}"
    wid = n8n.create_workflow(name)
    r = n8n.workflow(wid)
    assert r.status_code == 200, r.text[:300]
    wf = r.json()["data"]
    assert wf["name"] == name and wf["nodes"][0]["type"] == "n8n-nodes-base.manualTrigger"
    assert name in n8n.names()


@pytest.mark.install
def test_the_editor_signs_in_in_a_browser(n8n, page):
    n8n.owner()

    def sign_in(page):
        page.goto("signin")
        page.wait_for_selector("input[type=password]")
        assert "n8n" in page.title(), page.title()
        page.fill("input[type=email]", "owner@cc-ci.test")
        page.fill("input[type=password]", n8n.password)
        page.keyboard.press("Enter")
        page.wait_for_url("**/home/**", timeout=30_000)

    steady_steps(page, sign_in)
