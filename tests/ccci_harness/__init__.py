"""cc-ci's test harness: what a recipe test may rely on while stage-runner drives a deployed app.

The pytest side lives in :mod:`ccci_harness.plugin` (markers + fixtures); the pieces here are
plain Python so the harness's own tests can use them without pytest's machinery.
See docs/writing-tests.md for the stage contract.
"""

from .context import PHASES, STAGE_OF_PHASE, AppInfo, Context
from .kv import KV
from .wait import wait_until

__all__ = ["PHASES", "STAGE_OF_PHASE", "AppInfo", "Context", "KV", "wait_until"]
