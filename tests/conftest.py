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

def _is_recipe_suite(top: str) -> bool:
    """A recipe suite (or the template) is a folder with a ci.json; other folders (the
    harness's own tests, other tools' tests) run as usual."""
    return bool(top) and (HERE / top / "ci.json").is_file()


def pytest_collection_modifyitems(config, items):
    if os.environ.get("CCCI_DOMAIN"):
        return
    skip = pytest.mark.skip(reason="recipe suite: no deployed app (CCCI_DOMAIN is not set)")
    for item in items:
        try:
            rel = Path(str(item.path)).resolve().relative_to(HERE)
        except ValueError:
            continue
        if len(rel.parts) > 1 and _is_recipe_suite(rel.parts[0]):
            item.add_marker(skip)
