"""wordpress after install: the web installer finishes against the MariaDB service, a post
published through XML-RPC is public through the REST API and on the front page, a wrong
password is refused, and a browser logs in to the dashboard."""

import secrets
import xmlrpc.client

import pytest

from ccci_harness.browser import steady_steps


@pytest.mark.install
def test_installer_finishes_and_the_site_describes_itself(wp, http, app):
    wp.install("cc-ci install")
    assert wp.installed()
    r = http.get("/", params={"rest_route": "/"})
    assert r.status_code == 200, r.text[:300]
    site = r.json()
    assert site["url"] == f"https://{app.domain}", site["url"]
    assert site["name"] == "cc-ci install"


@pytest.mark.install
def test_a_published_post_is_public(wp, http):
    wp.install("cc-ci install")
    title = f"cc-ci post {secrets.token_hex(6)}"
    wp.new_post(title, "<p>hello from cc-ci</p>")
    assert wp.public_titles(title) == [title]
    front = http.get("/")
    assert front.status_code == 200 and title in front.text, front.text[:300]


@pytest.mark.install
def test_an_upload_is_served_from_wp_content(wp, http):
    wp.install("cc-ci install")
    path = wp.upload(f"ccci-{secrets.token_hex(4)}.png", wp.pixel)
    r = http.get(path)
    assert r.status_code == 200 and r.content == wp.pixel
    assert r.headers.get("Content-Type") == "image/png"


@pytest.mark.install
def test_a_wrong_password_is_refused(wp):
    wp.install("cc-ci install")
    with pytest.raises(xmlrpc.client.Fault) as e:
        wp.call("wp.getUsersBlogs", wp.admin, wp.password + "-wrong")
    assert e.value.faultCode == 403, e.value


@pytest.mark.install
def test_browser_logs_in_to_the_dashboard(wp, page):
    wp.install("cc-ci install")

    def log_in(page):
        page.goto("wp-login.php")
        page.fill("#user_login", wp.admin)
        page.fill("#user_pass", wp.password)
        page.click("#wp-submit")
        page.wait_for_selector("#wpadminbar")

    steady_steps(page, log_in)
    assert "/wp-admin/" in page.url, page.url
    assert page.locator("#wpbody h1").first.inner_text().strip() == "Dashboard"
