"""Root conftest of cc-ci's test tree: loads the harness plugin, and keeps the recipe suites
from running when no app is deployed (`pytest tests` on a dev machine runs only the harness's
own tests; the suites run when stage-runner, or a harness test, sets CCCI_DOMAIN)."""

import os
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

pytest_plugins = ["ccci_harness.plugin"]

# Directories under tests/ that are not recipe suites.
NOT_SUITES = {"harness_tests", "ccci_harness", "_template"}


def pytest_collection_modifyitems(config, items):
    if os.environ.get("CCCI_DOMAIN"):
        return
    skip = pytest.mark.skip(reason="recipe suite: no deployed app (CCCI_DOMAIN is not set)")
    for item in items:
        try:
            rel = Path(str(item.path)).resolve().relative_to(HERE)
        except ValueError:
            continue
        top = rel.parts[0] if len(rel.parts) > 1 else ""
        if top and top not in {"harness_tests", "ccci_harness"}:
            item.add_marker(skip)
