"""Fixtures for the harness's own tests: stand-in worlds built from the real `abra` stand-in."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from standin_world import World  # noqa: E402


@pytest.fixture
def world():
    w = World()
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def html_app(world):
    """A custom-html app at its latest release, deployed; returns the domain."""
    domain = "html.ci.example"
    world.abra("app", "new", "custom-html", "--server", "default", "--domain", domain, "-S")
    world.abra("app", "deploy", domain)
    return domain
