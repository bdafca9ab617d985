"""The "Testing your app" page's tests (docs/examples/test_testing_app.py) pass."""

import os
import re
import subprocess
import sys
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "docs" / "examples"


def test_the_tutorial_tests_pass():
    env = dict(os.environ, PYTHONPATH=str(EXAMPLES))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(EXAMPLES),
            str(EXAMPLES / "test_testing_app.py"),
        ],
        capture_output=True,
        text=True,
        cwd=str(EXAMPLES),
        env=env,
        timeout=120,
    )
    assert re.search(r"^7 passed in ", result.stdout, re.M), (
        result.stdout + result.stderr
    )
