"""`abra app run` for the `app_run` fixture: a command in one of the app's services."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass


@dataclass(frozen=True)
class RunResult:
    args: list
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def check(self) -> "RunResult":
        """Raises with the output when the command failed; returns self otherwise."""
        if self.returncode != 0:
            raise AssertionError(
                f"{' '.join(self.args)} exited {self.returncode}\n"
                f"stdout: {self.stdout[-2000:]}\nstderr: {self.stderr[-2000:]}"
            )
        return self


class AppRunner:
    """Runs `abra app run --no-tty <domain> <service> -- <cmd...>` with the run's ABRA_DIR."""

    def __init__(self, abra: str, domain: str, timeout: float = 120.0):
        self.abra = abra
        self.domain = domain
        self.timeout = timeout

    def __call__(self, service: str, *cmd: str, input: str | None = None,
                 timeout: float | None = None, check: bool = False) -> RunResult:
        if not cmd:
            raise ValueError("app_run needs a command to run")
        # --no-tty: there is no terminal in CI, and docker refuses to allocate one without.
        args = [self.abra, "app", "run", "--no-tty", self.domain, service, "--", *cmd]
        try:
            p = subprocess.run(
                args,
                input=input,
                capture_output=True,
                text=True,
                timeout=timeout or self.timeout,
                env=os.environ.copy(),
                stdin=None if input is not None else subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired as e:
            raise AssertionError(
                f"{' '.join(args)} did not finish within {e.timeout:g}s"
            ) from None
        result = RunResult(args, p.returncode, p.stdout, p.stderr)
        return result.check() if check else result
