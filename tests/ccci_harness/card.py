"""The run's summary card (a PNG for the PR comment, like YunoHost's) and the screenshot of the
app's landing page it shows. stage-runner runs both, best effort:

    python -m ccci_harness.card landing --out PNG [--path /]
        after install's readiness check, before any test: the page at PATH, viewport only.
        Exit 3 (and no file) when the page shows one of the run's values: a page showing
        credentials is never kept.
    python -m ccci_harness.card render --summary JSON --out PNG --level N --level-name NAME
        [--screenshot PNG]
        the card, from the (already redacted) summary.

Both read the run from the same CCCI_* environment as the tests (context.Context)."""

from __future__ import annotations

import argparse
import base64
import html
import json
import sys
import urllib.parse
from pathlib import Path

from .browser import launch, steady_goto
from .context import Context

VIEWPORT = {"width": 1280, "height": 800}
# Stages shown on the card, in run order; prepare and teardown only when they went wrong.
LADDER = ("install", "upgrade", "backup", "recipe-tests", "lint")
MAX_FAILURES = 5
SHOWS_SECRET = 3


def secret_forms(values: dict) -> list:
    """What a value may look like on a page: as is, URL-encoded, base64."""
    forms = []
    for v in values.values():
        if not isinstance(v, str) or len(v) < 6:
            continue
        forms += [v, urllib.parse.quote(v, safe=""), base64.b64encode(v.encode()).decode()]
    return forms


def page_text(page) -> str:
    """Everything a person can read on the page, form fields included."""
    return page.evaluate(
        """() => [document.body ? document.body.innerText : '',
                  ...Array.from(document.querySelectorAll('input, textarea'), e => e.value)]
                 .join('\\n')"""
    )


def landing(ctx: Context, out: Path, path: str) -> int:
    from playwright.sync_api import sync_playwright

    forms = secret_forms(ctx.values())
    with sync_playwright() as pw:
        browser = launch(pw, ctx.chromium, ctx.resolve)
        try:
            page = steady_goto(browser.new_context(
                ignore_https_errors=not ctx.tls_verify, viewport=VIEWPORT
            ).new_page())
            page.goto(ctx.app().url(path), wait_until="load", timeout=30_000)
            try:
                page.wait_for_load_state("networkidle", timeout=5_000)
            except Exception:  # noqa: BLE001 - a page that keeps polling is still a page
                pass
            text = page_text(page)
            if any(f in text for f in forms):
                print(f"card: {path} shows one of the run's values; no screenshot kept")
                return SHOWS_SECRET
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out), full_page=False, timeout=15_000)
        finally:
            browser.close()
    return 0


MARK = {
    "passed": ("✓", "p"),
    "failed": ("✗", "f"),
    "error": ("!", "e"),
    "skipped": ("↷", "s"),
    "running": ("…", "s"),
}

STYLE = """
*{box-sizing:border-box;margin:0}
body{background:#fff;font:15px/1.35 "DejaVu Sans",sans-serif;color:#1f2328}
.card{width:760px;padding:18px;border:1px solid #d1d9e0;border-radius:10px;display:flex;gap:18px}
.shot{width:320px;height:200px;border:1px solid #d1d9e0;border-radius:6px;object-fit:cover;
  object-position:top}
.noshot{width:320px;height:200px;border:1px dashed #d1d9e0;border-radius:6px;color:#59636e;
  display:flex;align-items:center;justify-content:center;text-align:center;padding:12px}
.side{flex:1;min-width:0}
h1{font-size:20px;overflow-wrap:anywhere}
.meta{color:#59636e;font-size:13px;margin:2px 0 10px;overflow-wrap:anywhere}
.level{display:inline-block;color:#fff;border-radius:4px;padding:2px 8px;font-weight:bold;
  margin-bottom:8px}
.l0{background:#cf222e}.l1{background:#d1690e}.l2{background:#b08800}.l3{background:#6f9a1f}
.l4{background:#2da44e}.l5{background:#1a7f37}.l6{background:#116329}
ul{list-style:none;padding:0}
li{margin:3px 0;overflow-wrap:anywhere}
li b{display:inline-block;width:1.2em;text-align:center}
.p b{color:#1a7f37}.f b{color:#cf222e}.e b{color:#bc4c00}.s b{color:#9a6700}
.why{color:#59636e;font-size:13px}
.t{font:12px "DejaVu Sans Mono",monospace;color:#cf222e;margin-left:1.6em}
"""


def card_html(summary: dict, level: int, level_name: str, shot: Path | None) -> str:
    e = html.escape
    stages = {s.get("name"): s for s in summary.get("stages", [])}
    rows = []
    shown = [n for n in ("prepare",) if stages.get(n, {}).get("status") not in (None, "passed")]
    shown += list(LADDER)
    shown += [n for n in ("teardown",) if stages.get(n, {}).get("status") not in (None, "passed")]
    for name in shown:
        st = stages.get(name)
        if st is None:
            rows.append(f'<li class=s><b>–</b> {e(name)} <span class=why>not run</span></li>')
            continue
        sym, cls = MARK.get(st.get("status"), ("?", "s"))
        why = st.get("reason") or ""
        # Only a declared skip is climbed past (docs/levels.md).
        why += {"declared": " (declared)", "gap": " · coverage gap"}.get(st.get("skip"), "")
        tests = st.get("tests") or {}
        if not why and tests.get("total"):
            why = f"{tests.get('passed', 0)}/{tests['total']} tests passed"
        rows.append(
            f'<li class={cls}><b>{sym}</b> {e(name)} <span class=why>{e(why[:140])}</span></li>'
        )
        failures = st.get("failures") or []
        for f in failures[:MAX_FAILURES]:
            test = str(f.get("name", "")).split("::")[-1]
            rows.append(f"<li class=t>✗ {e(test[:90])}</li>")
        if len(failures) > MAX_FAILURES:
            rows.append(f"<li class=t>and {len(failures) - MAX_FAILURES} more</li>")
    if shot is not None and shot.is_file():
        data = base64.b64encode(shot.read_bytes()).decode()
        picture = f'<img class=shot alt="" src="data:image/png;base64,{data}">'
    else:
        picture = "<div class=noshot>no screenshot of the app</div>"
    sha = str(summary.get("ref", ""))[:10]
    version = summary.get("version") or "unreleased"
    meta = f"{version} · PR #{summary.get('pr', '?')} · {sha} · run #{summary.get('build', '?')}"
    return (
        f"<!doctype html><meta charset=utf-8><style>{STYLE}</style><div class=card>{picture}"
        f"<div class=side><h1>cc-ci · {e(str(summary.get('recipe', '')))}</h1>"
        f"<p class=meta>{e(meta)}</p>"
        f"<span class='level l{int(level)}'>level {int(level)} · {e(level_name)}</span>"
        f"<ul>{''.join(rows)}</ul></div></div>"
    )


def render(ctx: Context, summary: Path, out: Path, level: int, level_name: str,
           shot: Path | None) -> int:
    from playwright.sync_api import sync_playwright

    doc = card_html(json.loads(summary.read_text(encoding="utf-8")), level, level_name, shot)
    with sync_playwright() as pw:
        browser = launch(pw, ctx.chromium, None)
        try:
            page = browser.new_page(viewport={"width": 800, "height": 400})
            # Nothing to fetch: the screenshot is inline, and JavaScript is not needed.
            page.route("**/*", lambda route: route.abort())
            page.set_content(doc, wait_until="load", timeout=15_000)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.locator(".card").screenshot(path=str(out), timeout=15_000)
        finally:
            browser.close()
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m ccci_harness.card")
    sub = p.add_subparsers(dest="cmd", required=True)
    a = sub.add_parser("landing")
    a.add_argument("--out", required=True, type=Path)
    a.add_argument("--path", default="/")
    r = sub.add_parser("render")
    r.add_argument("--summary", required=True, type=Path)
    r.add_argument("--out", required=True, type=Path)
    r.add_argument("--level", required=True, type=int)
    r.add_argument("--level-name", required=True)
    r.add_argument("--screenshot", type=Path)
    args = p.parse_args(argv)
    ctx = Context.from_env()
    if args.cmd == "landing":
        return landing(ctx, args.out, args.path)
    return render(ctx, args.summary, args.out, args.level, args.level_name, args.screenshot)


if __name__ == "__main__":
    sys.exit(main())
