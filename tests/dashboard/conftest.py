"""The dashboard's browser test is not a recipe suite: the root conftest skips every directory
it does not know while no app is deployed, so this one takes its own items back out of that
rule (tests/conftest.py NOT_SUITES is the cleaner home for "dashboard")."""

import pytest


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    for item in items:
        if "tests/dashboard/" not in str(item.path).replace("\\", "/"):
            continue
        item.own_markers = [
            m
            for m in item.own_markers
            if not (m.name == "skip" and str(m.kwargs.get("reason", "")).startswith("recipe suite"))
        ]
