"""The imports docs/migrating/igor.rst shows are real, and name the same objects."""

import re
from pathlib import Path

import twistbridge.igor

DOC = Path(__file__).resolve().parents[3] / "docs" / "migrating" / "igor.rst"


def test_the_shown_imports_work():
    program = DOC.read_text("utf-8").split("With twistbridge, the same program:", 1)[1]
    block = program.split(".. code-block:: python", 1)[1].split("\n\n\n", 1)[0]
    lines = [
        line.strip()
        for line in block.splitlines()
        if re.match(r"\s+from twistbridge\.igor", line)
    ]
    assert len(lines) == 3
    names = {}
    for line in lines:
        scope = {}
        exec(line, scope)
        for name, value in scope.items():
            if name != "__builtins__":
                assert names.setdefault(name, value) is value
                assert getattr(twistbridge.igor, name) is value
    assert set(names) == {"IgorServer", "CONFIG", "flatten", "IgorProcess"}
