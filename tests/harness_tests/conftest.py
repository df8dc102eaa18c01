"""Fixtures for the harness's own tests: worlds of the stand-in `abra` on the real engine."""

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
    assert w.leftovers() == [], "the world left apps on the engine"


@pytest.fixture
def html_app(world):
    """A custom-html app at its latest release, deployed; returns the domain."""
    domain = world.domain("html")
    world.abra("app", "new", "custom-html", "--server", "default", "--domain", domain, "-S")
    world.deploy(domain)
    return domain
