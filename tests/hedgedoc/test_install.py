"""hedgedoc after install: the status endpoint answers, a note created over HTTP reads back
byte for byte, and the browser renders its published view."""

import pytest


@pytest.mark.install
def test_status(http):
    r = http.get("/status")
    assert r.status_code == 200, r.text[:300]
    status = r.json()
    assert "onlineNotes" in status and "onlineUsers" in status, status


@pytest.mark.install
def test_note_round_trips(notes, marker):
    md = f"# {marker}\n\nsome *markdown*\n"
    note = notes.create(md)
    r = notes.read(note)
    assert r.status_code == 200
    assert r.text == md


@pytest.mark.install
def test_browser_renders_published_note(page, notes, marker):
    note = notes.create(f"# {marker}\n\nrendered by cc-ci\n")
    page.goto(f"/{note}/publish")
    page.get_by_role("heading", name=marker).wait_for(timeout=30_000)
    assert "rendered by cc-ci" in page.content()
