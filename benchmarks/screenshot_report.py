"""Render a report.html in headless Chromium and save a PNG screenshot (to check that the plots show).

    python benchmarks/screenshot_report.py runs/eval/sft/report.html --out report.png [--height 4000]

Chromium is optional (Debian: `apt-get install -y chromium`); without it the script exits with status 3.
Network access is disabled for the page (the report must be self-contained anyway).
"""

from __future__ import annotations

import argparse
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


def screenshot(html_path: str | Path, out_png: str | Path, *, width: int = 1400, height: int = 4000,
               timeout: float = 120.0) -> Path:
    """Take a full-window screenshot of a local HTML file with headless Chromium; return the PNG path."""
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium-family browser found (apt-get install -y chromium)")
    html_path, out_png = Path(html_path).resolve(), Path(out_png).resolve()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="polyalign-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
               "--disable-extensions", "--hide-scrollbars", f"--user-data-dir={profile}",
               f"--screenshot={out_png}", f"--window-size={width},{height}", html_path.as_uri()]
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
    args = parser.parse_args(argv)
    if find_browser() is None:
        print("no Chromium-family browser found (apt-get install -y chromium)", file=sys.stderr)
        return 3
    path = screenshot(args.html, args.out, width=args.width, height=args.height)
    print(f"screenshot: {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
