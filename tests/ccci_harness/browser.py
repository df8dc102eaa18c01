"""Chromium through Playwright for the `page` fixture: Debian's Chromium (CCCI_CHROMIUM), never
Playwright's own download, headless, with the app's names mapped to CCCI_RESOLVE's address
where no DNS knows them."""

from __future__ import annotations

import re
import time
from pathlib import Path

# Quiet, sandbox-free flags: CI runs as an unprivileged user without user namespaces, and
# background fetches would only add noise (and fail: no network but the app).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


def chromium_args(resolve=None) -> list:
    args = list(CHROMIUM_ARGS)
    if resolve is not None:
        # The name stays in the URL, so TLS and Host are the app's (context.Resolve). Every
        # other name resolves to nothing: where the apps' names need mapping, nothing but the
        # apps is there to reach, and a page's third-party asset (a Gravatar, a CDN) fails at
        # once instead of leaving the machine. The first matching rule wins; EXCLUDE keeps the
        # loopback names (a `MAP *` catches IP literals too).
        args.append(f"--host-resolver-rules=MAP {resolve.pattern} {resolve.address},"
                    " MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost")
    return args


def launch(playwright, executable: str, resolve=None):
    if not Path(executable).exists():
        raise FileNotFoundError(
            f"Chromium not found at {executable} (set CCCI_CHROMIUM to the browser executable)"
        )
    return playwright.chromium.launch(
        executable_path=executable, headless=True, args=chromium_args(resolve),
        timeout=60_000
    )


NETWORK_CHANGED = "ERR_NETWORK_CHANGED"


def steady_goto(page, tries: int = 3):
    """Makes `page.goto` try again when Chromium says the host's network changed under it
    (net::ERR_NETWORK_CHANGED: an interface of another app's network coming or going on the
    same engine). That says nothing of the app; any other error is raised at once. Also
    counts the page's requests that failed so (`page.ccci_network_changed`), for
    `steady_steps`."""
    goto = page.goto
    page.ccci_network_changed = 0

    def failed(request):
        if NETWORK_CHANGED in (request.failure or ""):
            page.ccci_network_changed += 1

    page.on("requestfailed", failed)

    def go(url, **kw):
        for attempt in range(tries):
            try:
                return goto(url, **kw)
            except Exception as e:  # noqa: BLE001 - playwright's Error, matched by its text
                if "ERR_NETWORK_CHANGED" not in str(e) or attempt == tries - 1:
                    raise
                time.sleep(0.5)

    page.goto = go
    return page


def steady_steps(page, steps, tries: int = 3):
    """Runs `steps(page)` — a form filled and submitted, the next page waited for — again from
    the start when it raised after one of the page's requests failed with
    ERR_NETWORK_CHANGED (a submit's navigation, which `steady_goto` cannot see); any other
    failure is raised at once, as is the last try's. A try may have got further than it saw
    (signed in, then the redirect broke), and an app then sends a second sign-in page
    elsewhere: each retry starts with the browser's cookies cleared, so `steps` must set up
    any session it needs itself."""
    for attempt in range(tries):
        before = page.ccci_network_changed
        try:
            return steps(page)
        except Exception:  # noqa: BLE001 - re-raised unless the network changed under it
            if page.ccci_network_changed == before or attempt == tries - 1:
                raise
            page.context.clear_cookies()
            time.sleep(0.5)


def artifact_name(nodeid: str, suffix: str = "") -> str:
    """A file name for a test's screenshot: the test's name without the path noise."""
    name = nodeid.split("::", 1)[-1] if "::" in nodeid else nodeid
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.") or "test"
    return f"{name[:120]}{suffix}.png"
