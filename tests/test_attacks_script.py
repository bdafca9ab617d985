"""
C{bench/attacks.py --quick} runs every attack to completion against a real
daemon and prints its table.  Whether each row meets its goals is the
script's own verdict (its exit status without C{--report-only}); here only
that it runs and reports.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SCRIPT = os.path.join(ROOT, "bench", "attacks.py")


def _names():
    # (sys.path is put back whole: the script adds its own folder too, and a
    # bench/ left on it would shadow the test apps for the servers later
    # tests start from this process's path, bench/bgpy_tasks.py among them)
    saved = list(sys.path)
    sys.path.insert(0, os.path.join(ROOT, "bench"))
    try:
        import attacks
    finally:
        sys.path[:] = saved
    return [a[0] for a in attacks.ATTACKS]


@pytest.mark.long
def test_quick_run_prints_every_row_and_exits_0():
    """Every attack gets its row, the header and the summary line are there."""
    done = subprocess.run(
        [sys.executable, SCRIPT, "--quick", "--report-only"],
        capture_output=True,
        text=True,
        timeout=180,
        cwd=ROOT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("attack "))
    assert lines[header].split()[:8] == [
        "attack",
        "alive",
        "p50",
        "p99",
        "max",
        "rss+MiB",
        "errs",
        "cpu",
    ]
    names = _names()
    rows = [line.split()[0] for line in lines[header + 2 : header + 2 + len(names)]]
    assert rows == names
    assert any(
        line.endswith("'!' marks a miss.")
        and f"/{len(names)} rows within their goals" in line
        for line in lines
    )


def test_unknown_attack_name_is_a_usage_error():
    """--only naming no attack exits 2 with the list of names."""
    done = subprocess.run(
        [sys.executable, SCRIPT, "--only", "nonesuch"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert done.returncode == 2
    assert "--only names none of: bgpy_deep_tuple_key," in done.stderr
