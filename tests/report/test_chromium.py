"""The HTML page in a real browser: loads headless with no console errors, and a screenshot is taken.

Runs where Chromium is installed (Debian: ``apt-get install chromium``; CI installs it), skipped elsewhere.
Chromium logs every console message of the page (``INFO:CONSOLE``) with ``--enable-logging=stderr``:
script errors, and Content-Security-Policy refusals if the page tried to fetch anything. A control page
with a planted error proves the check can fail.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CANDIDATES = ("/usr/bin/chromium", "/usr/bin/chromium-browser", "chromium", "chromium-browser", "google-chrome")
CHROMIUM = next((p for p in (shutil.which(c) for c in CANDIDATES) if p and Path(p).exists()), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--window-size=1366,2000"]
CONSOLE = re.compile(r"CONSOLE|Uncaught|Refused to|Content Security Policy", re.I)


def _chromium(args, tmp_path):
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    return run


def console_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if CONSOLE.search(line)]


def test_control_page_with_an_error_is_caught(tmp_path):
    bad = tmp_path / "bad.html"
    bad.write_text("<!DOCTYPE html><html><body><p>x</p><script>undefinedFn();</script></body></html>")
    lines = console_lines(_chromium(["--dump-dom", bad.as_uri()], tmp_path).stderr)
    assert any("undefinedFn is not defined" in line for line in lines), lines


def test_page_loads_without_console_errors(report, tmp_path):
    shot = report.index.parent / "screenshot.png"
    run = _chromium([f"--screenshot={shot}", report.index.resolve().as_uri()], tmp_path)
    assert console_lines(run.stderr) == []
    assert shot.exists() and shot.stat().st_size > 50_000  # a rendered page, not a blank one


def test_dom_has_every_image_and_the_hostile_name_as_text(report, tmp_path):
    run = _chromium(["--dump-dom", report.index.resolve().as_uri()], tmp_path)
    assert console_lines(run.stderr) == []
    dom = run.stdout
    assert dom.count("<img ") == len(report.figures)
    assert "<script>alert" not in dom and "&lt;script&gt;alert" in dom
