"""Running the contract suite for one adapter in a subprocess, with its fixture pointed
elsewhere (a real vendor, or an emulator in another process) by an environment variable.

The live tests use it: the suite is the same one that runs against the emulators,
only the URL its fixture builds the adapter from changes.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

__all__ = ["SUITE_TIMEOUT", "report_of", "run_contract_suite", "summary"]

TESTS = Path(__file__).resolve().parent
#: Bound on the subprocess (a bound on a hang, not a timing claim).
SUITE_TIMEOUT = 600


def run_contract_suite(adapter: str, variable: str, url: str) -> subprocess.CompletedProcess[str]:
    """``pytest tests/test_contract.py -k <adapter>`` with ``variable`` set to ``url``."""
    command = [
        sys.executable,
        "-m",
        "pytest",
        str(TESTS / "test_contract.py"),
        "-k",
        adapter,
        "-q",
        "-rsx",
        "-p",
        "no:cacheprovider",
    ]
    return subprocess.run(
        command,
        cwd=TESTS.parent,
        env={**os.environ, variable: url},
        capture_output=True,
        text=True,
        timeout=SUITE_TIMEOUT,
        check=False,
    )


def summary(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    """The counts of pytest's last line: ``{"passed": 24, "skipped": 12, ...}``."""
    last = result.stdout.strip().splitlines()[-1] if result.stdout.strip() else ""
    return {word: int(count) for count, word in re.findall(r"(\d+) (\w+)", last)}


def report_of(result: subprocess.CompletedProcess[str]) -> str:
    """The end of the run's output, for an assertion message."""
    return f"{result.stdout[-6000:]}\n{result.stderr[-2000:]}"
