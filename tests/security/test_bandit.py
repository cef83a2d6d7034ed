"""bandit, the Python security linter, finds nothing in the package that is not explained where
it is silenced (``pyproject.toml`` says why asserts are allowed; each ``nosec`` has its reason)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[2]


def test_bandit_finds_nothing_unexplained():
    result = subprocess.run([sys.executable, "-m", "bandit", "-q", "-r", "tui_chat", "-c", "pyproject.toml"],
                            cwd=CHECKOUT, capture_output=True, text=True, timeout=120)  # fmt: skip
    assert result.returncode == 0, result.stdout
    assert ">> Issue" not in result.stdout
