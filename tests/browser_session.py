"""What the browser tests share: their prerequisites, where their screenshots go, one session run and its checks.

Each browser test file runs one session script (frontend/tests/<script>.mjs, Chromium driven by playwright-core)
that walks through the dashboard and prints a report of named checks as its last line; each test asserts one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FRONTEND = os.path.join(ROOT, "frontend")
#: Where screenshots go when set (TB_XAI_SCREENSHOTS=docs/screenshots regenerates the README's), else a temp dir.
SCREENSHOTS = os.path.abspath(os.environ["TB_XAI_SCREENSHOTS"]) if os.environ.get("TB_XAI_SCREENSHOTS") else None
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")


def check_prerequisites() -> None:
    """The browser tests are part of the suite: a missing prerequisite fails them, it never skips them."""
    missing = [what for what, ok in (
        (f"Chromium at {CHROMIUM}", os.path.exists(CHROMIUM)),
        ("node", shutil.which("node") is not None),
        ("frontend/node_modules/playwright-core (run `npm ci` in frontend/)",
         os.path.isdir(os.path.join(FRONTEND, "node_modules", "playwright-core"))),
    ) if not ok]
    if missing:
        pytest.fail("the browser tests need " + ", ".join(missing) + "; tests/run.sh installs them")


def screenshot_dir(tmp_path_factory) -> str:
    """`SCREENSHOTS`, or a new temporary directory."""
    directory = SCREENSHOTS or str(tmp_path_factory.mktemp("screenshots"))
    os.makedirs(directory, exist_ok=True)
    return directory


def run_session(script: str, config: dict, timeout: int) -> dict:
    """Runs frontend/tests/`script` with `config` and returns the report it prints last."""
    result = subprocess.run(["node", os.path.join("tests", script), json.dumps(config)], cwd=FRONTEND,
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, f"browser session crashed:\n{result.stdout}\n{result.stderr}"
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_check(report: dict, name: str) -> None:
    """Fails naming the check when the session never reached it or it did not hold."""
    outcome = report["checks"].get(name)
    assert outcome is not None, f"the browser session never reached {name!r}"
    assert outcome["ok"], outcome["detail"]
