"""The HTML page in a real browser: loads headless with no console errors, and a screenshot is taken.

Runs where Chromium is installed (Debian: ``apt-get install chromium``; CI installs it), skipped elsewhere.
The page has no script of its own, so an error means a broken image, a blocked fetch or invalid markup
that the browser reports; a JS hook in the DOM dump also records any runtime error.
"""

import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = next((p for p in ("/usr/bin/chromium", "/usr/bin/chromium-browser", shutil.which("chromium") or "")
                 if p and Path(p).exists()), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Chromium not installed (apt-get install chromium)")

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--enable-logging=stderr", "--v=0", "--window-size=1366,2000"]
# Chromium's own startup noise in containers (no D-Bus, no GPU) is not about the page
NOISE = re.compile(r"dbus|bus\.cc|object_proxy|gpu|viz|sandbox|gcm|fontconfig|zygote|power_|ALSA|Fontconfig", re.I)


def _chromium(args, tmp_path):
    cmd = [CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120)


def test_page_loads_without_console_errors(report, tmp_path):
    url = report.index.resolve().as_uri()
    shot = report.index.parent / "screenshot.png"
    run = _chromium([f"--screenshot={shot}", url], tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert console == [], console
    page_errors = [line for line in run.stderr.splitlines()
                   if ("ERROR" in line or "Refused" in line) and not NOISE.search(line)]
    assert page_errors == [], page_errors
    assert shot.exists() and shot.stat().st_size > 50_000  # a rendered page, not a blank one


def test_dom_has_every_image_decoded(report, tmp_path):
    run = _chromium(["--dump-dom", report.index.resolve().as_uri()], tmp_path)
    assert run.returncode == 0, run.stderr[-2000:]
    dom = run.stdout
    assert dom.count("<img ") == len(report.figures)
    assert "<script>alert" not in dom  # the hostile machine name stayed text
    assert "&lt;script&gt;alert" in dom
