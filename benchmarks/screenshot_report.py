"""Render a report.html in headless Chromium and save a PNG screenshot (to check that the plots show).

    python benchmarks/screenshot_report.py runs/eval/sft/report.html --out report.png [--height 4000]
    python benchmarks/screenshot_report.py runs/demo/compare/report.html --only samples --out samples.png \
        --js "var b = document.getElementById('sb-bucket'); b.selectedIndex = 3; b.dispatchEvent(new Event('change'))"

`--only ID` shows only that section of the page (e.g. `samples`, the sample browser); `--js CODE` runs after the
page's own scripts (e.g. to set the browser's filters through its controls). `dump_dom` returns the page's DOM
after its scripts ran (the browser tests drive the sample browser this way).

Chromium is optional (Debian: `apt-get install -y chromium`); without it the script exits with status 3.
Network access is disabled for the page (the report must be self-contained anyway).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    """Path of a Chromium-family browser, or None."""
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def _flags(profile: str) -> list[str]:
    return ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-extensions",
            "--hide-scrollbars", f"--user-data-dir={profile}"]


def with_script(html_path: str | Path, out_html: str | Path, js: str = "", *, only: str | None = None) -> Path:
    """A copy of the page with `js` run after its own scripts (and, with `only`, every other top-level element
    hidden, so that a screenshot shows that section)."""
    page = Path(html_path).read_text(encoding="utf-8")
    extra = ""
    if only:
        extra += ("Array.prototype.forEach.call(document.body.children, function (e) { if (e.id !== "
                  f"{json.dumps(only)} && e.tagName !== 'SCRIPT') e.style.display = 'none'; }});")
    extra += js
    end = page.rindex("</body>")
    Path(out_html).write_text(page[:end] + f"<script>{extra}</script>" + page[end:], encoding="utf-8")
    return Path(out_html)


def dump_dom(html_path: str | Path, *, timeout: float = 120.0, budget_ms: int = 3000) -> str:
    """The serialized DOM of a local page after its scripts ran (and `budget_ms` of virtual time passed)."""
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium-family browser found (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory(prefix="polyalign-chromium-") as profile:
        cmd = [browser, *_flags(profile), f"--virtual-time-budget={budget_ms}", "--dump-dom",
               Path(html_path).resolve().as_uri()]
        proc = subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
    return proc.stdout.decode("utf-8")


def screenshot(html_path: str | Path, out_png: str | Path, *, width: int = 1400, height: int = 4000,
               timeout: float = 120.0) -> Path:
    """Take a full-window screenshot of a local HTML file with headless Chromium; return the PNG path."""
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium-family browser found (apt-get install -y chromium)")
    html_path, out_png = Path(html_path).resolve(), Path(out_png).resolve()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="polyalign-chromium-") as profile:
        cmd = [browser, *_flags(profile), f"--screenshot={out_png}", f"--window-size={width},{height}",
               html_path.as_uri()]
        subprocess.run(cmd, check=True, capture_output=True, timeout=timeout)
    if not out_png.exists() or out_png.stat().st_size == 0:
        raise RuntimeError(f"chromium wrote no screenshot to {out_png}")
    return out_png


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("html", type=Path)
    parser.add_argument("--out", type=Path, default=Path("report.png"))
    parser.add_argument("--width", type=int, default=1400)
    parser.add_argument("--height", type=int, default=4000)
    parser.add_argument("--only", help="show only the top-level element with this id (e.g. samples)")
    parser.add_argument("--js", default="", help="JavaScript to run after the page's own scripts")
    args = parser.parse_args(argv)
    if find_browser() is None:
        print("no Chromium-family browser found (apt-get install -y chromium)", file=sys.stderr)
        return 3
    page = args.html
    with tempfile.TemporaryDirectory(prefix="polyalign-shot-") as tmp:
        if args.only or args.js:  # a temp copy: the report stays untouched
            page = with_script(args.html, Path(tmp) / "page.html", args.js, only=args.only)
        path = screenshot(page, args.out, width=args.width, height=args.height)
    print(f"screenshot: {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
