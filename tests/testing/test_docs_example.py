"""The "Testing your app" page's tests (docs/examples/test_testing_app.py) pass."""

import re
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent.parent.parent / "docs" / "examples"


def test_the_tutorial_tests_pass(run_pytest):
    result = run_pytest(
        EXAMPLES / "test_testing_app.py",
        EXAMPLES,
        EXAMPLES,
        "--rootdir",
        str(EXAMPLES),
    )
    assert re.search(r"^7 passed in ", result.stdout, re.M), (
        result.stdout + result.stderr
    )
