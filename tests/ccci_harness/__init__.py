"""cc-ci's test harness: what a recipe test may rely on while stage-runner drives a deployed app.

The pytest side lives in :mod:`ccci_harness.plugin` (markers + fixtures); the pieces here are
plain Python so the harness's own tests can use them without pytest's machinery.
See docs/writing-tests.md for the stage contract.
"""

from .context import PHASES, STAGE_OF_PHASE, AppInfo, Context
from .kv import KV
from .wait import wait_until

__all__ = ["PHASES", "STAGE_OF_PHASE", "AppInfo", "Context", "KV", "fill_me_in", "wait_until"]


def fill_me_in(what: str) -> None:
    """Fails the test: a copy of tests/_template checks nothing about the recipe until its
    tests say what a person would check. Delete the call once the test asserts that."""
    import pytest

    pytest.fail(f"fill me in: {what} (tests/_template is a skeleton; docs/enroll-recipe.md)",
                pytrace=False)
