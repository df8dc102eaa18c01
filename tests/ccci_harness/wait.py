"""A bounded wait for things that settle (a service restarting, a thumbnail being generated)."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """Raised when the condition never held; an AssertionError so pytest reports it as a failure."""


def wait_until(
    check: Callable[[], T],
    timeout: float = 60.0,
    interval: float = 0.5,
    what: str | None = None,
) -> T:
    """Calls `check` until it returns something truthy (returned) or `timeout` seconds pass.

    Exceptions from `check` count as "not yet"; the last one is named in the failure so a
    timeout says why the condition never held.
    """
    if timeout <= 0:
        raise ValueError("timeout must be positive")
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    last_value: object = None
    while True:
        try:
            value = check()
            if value:
                return value
            last_value, last_error = value, None
        except Exception as e:  # noqa: BLE001 - any failure of the probe means "not yet"
            last_error = e
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            label = what or getattr(check, "__name__", "condition")
            detail = (
                f"last error: {type(last_error).__name__}: {last_error}"
                if last_error is not None
                else f"last value: {last_value!r}"
            )
            raise WaitTimeout(f"{label} did not hold within {timeout:g}s ({detail})")
        time.sleep(min(interval, remaining))
