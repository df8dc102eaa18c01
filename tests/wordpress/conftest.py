"""wordpress suite helpers: WordPress's own installer, its XML-RPC API (posts, media) with the
admin's password, and its REST API for what any visitor sees.
(XML-RPC: https://codex.wordpress.org/XML-RPC_WordPress_API; REST: /wp-json/wp/v2.)"""

from __future__ import annotations

import base64
import re
import secrets
import xmlrpc.client

import pytest

ADMIN = "ccci-admin"
# A 1×1 PNG: WordPress accepts images as uploads by default.
PIXEL = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAQAAAC1HAwCAAAAC0lEQVR42mNkYAAAAAYAAjCB0C8AAAAASUVORK5CYII=")


class WordPress:
    admin = ADMIN
    pixel = PIXEL

    def __init__(self, http, domain: str, password: str):
        self.http = http
        self.domain = domain
        self.password = password

    def installed(self) -> bool:
        r = self.http.get("/wp-admin/install.php")
        assert r.status_code == 200, f"install.php: {r.status_code} {r.text[:300]}"
        return "Already Installed" in r.text

    def install(self, title: str) -> None:
        """The web installer's second step, as its form posts it; once per app."""
        if self.installed():
            return
        r = self.http.post("/wp-admin/install.php?step=2", data={
            "weblog_title": title, "user_name": ADMIN, "admin_password": self.password,
            "admin_password2": self.password, "admin_email": f"admin@{self.domain}",
            "blog_public": "0", "Submit": "Install WordPress", "language": ""})
        assert r.status_code == 200, f"install: {r.status_code} {r.text[:500]}"
        assert "Success!" in r.text, f"the installer did not finish: {r.text[:800]}"

    def call(self, method: str, *params):
        """One XML-RPC call; a fault is raised as xmlrpc.client.Fault."""
        body = xmlrpc.client.dumps(params, method, allow_none=True)
        r = self.http.post("/xmlrpc.php", data=body.encode(),
                           headers={"Content-Type": "text/xml"})
        assert r.status_code == 200, f"xmlrpc {method}: {r.status_code} {r.text[:300]}"
        (result,), _ = xmlrpc.client.loads(r.content)
        return result

    def new_post(self, title: str, content: str) -> str:
        return self.call("wp.newPost", 0, ADMIN, self.password, {
            "post_type": "post", "post_status": "publish", "post_title": title,
            "post_content": content})

    def delete_post(self, post_id: str) -> None:
        assert self.call("wp.deletePost", 0, ADMIN, self.password, post_id) is True

    def upload(self, name: str, data: bytes, mime: str = "image/png") -> str:
        """Uploads a file into the media library; returns its public URL path."""
        out = self.call("wp.uploadFile", 0, ADMIN, self.password, {
            "name": name, "type": mime, "bits": xmlrpc.client.Binary(data)})
        url = out["url"]
        assert url.startswith(f"https://{self.domain}/wp-content/uploads/"), url
        return url.removeprefix(f"https://{self.domain}")

    def public_titles(self, search: str) -> list:
        """Titles of published posts matching `search`, as the REST API shows them to anyone."""
        r = self.http.get("/", params={"rest_route": "/wp/v2/posts", "search": search})
        assert r.status_code == 200, f"REST posts: {r.status_code} {r.text[:300]}"
        return [p["title"]["rendered"] for p in r.json()]

    def version(self) -> str:
        """The WordPress version the site reports (its feed's generator)."""
        r = self.http.get("/", params={"feed": "rss2"})
        assert r.status_code == 200, f"feed: {r.status_code} {r.text[:300]}"
        m = re.search(r"<generator>https://wordpress.org/\?v=([0-9.]+)</generator>", r.text)
        assert m, f"no generator in the feed: {r.text[:300]}"
        return m.group(1)

    def seed(self, kv, key: str) -> dict:
        """The site installed, a published post and an uploaded image, remembered in kv."""
        self.install("cc-ci")
        title = f"cc-ci {key} {secrets.token_hex(6)}"
        post = self.new_post(title, f"<p>seeded for {key}</p>")
        upload = self.upload(f"ccci-{secrets.token_hex(4)}.png", PIXEL)
        seed = {"title": title, "post": post, "upload": upload}
        kv[key] = seed
        return seed


@pytest.fixture
def wp(http, app, values):
    return WordPress(http, app.domain, values["admin_password"])
