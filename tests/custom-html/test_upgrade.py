"""custom-html across an upgrade: a file put into the content volume on the old version is
served unchanged by the new one (the volume survives the redeploy)."""

import pytest


@pytest.mark.pre_upgrade
def test_seed_before_upgrade(http, put_file, token, kv):
    name, body = f"upgrade-{token}.html", f"<p>seeded before upgrade {token}</p>\n"
    put_file(name, body)
    r = http.get(f"/{name}")
    assert r.status_code == 200 and r.text == body
    kv["custom_html_upgrade_seed"] = {"name": name, "body": body}


@pytest.mark.post_upgrade
def test_seed_survives_upgrade(http, kv):
    seed = kv["custom_html_upgrade_seed"]
    r = http.get(f"/{seed['name']}")
    assert r.status_code == 200, f"seed {seed['name']} lost in the upgrade: {r.status_code}"
    assert r.text == seed["body"]


@pytest.mark.post_upgrade
def test_index_after_upgrade(http):
    r = http.get("/")
    assert r.status_code == 200
    assert "<html" in r.text.lower()
