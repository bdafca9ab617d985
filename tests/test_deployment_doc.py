"""docs/deployment.rst states every setting with its real default."""

from __future__ import annotations

import os
import re

from twistbridge.config import SIZE_SETTINGS, Settings, parse_size
from twistbridge.tap import Options

DOC = os.path.join(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
    "docs",
    "deployment.rst",
)

# Defaults that are words rather than values.
WORDS = {
    "app": "the demo app",
    "processes": "number of cores",
    "igor_allowed_origin": "the localhost origins",
    "bgpy_token_file": "``$BGPY_TOKEN``",
}


def settings_table() -> dict:
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    section = text.split("\nSettings\n--------\n", 1)[1].split(
        "\nGraceful shutdown\n", 1
    )[0]
    rows = re.findall(r"^\s+\* - ``(--[\w-]+)``\n\s+- (.+)$", section, re.M)
    return {option: default.strip() for option, default in rows}


def test_every_setting_is_documented_with_its_default():
    table = settings_table()
    options = {f"--{o[0]}" for o in Options.optParameters} | {
        "--igor-allowed-origin",
        "--bgpy-allow-module",
        "--allowed-host",
    }
    assert set(table) == options
    defaults = Settings()
    for option, shown in table.items():
        name = option[2:].replace("-", "_")
        if name in WORDS:
            assert shown == WORDS[name], option
            continue
        value = getattr(defaults, name)
        plain = shown.replace("``", "")
        if name in SIZE_SETTINGS:
            assert parse_size(plain) == value, option
        elif value is None or value == ():
            assert plain == "none", option
        elif isinstance(value, str):
            assert plain == value, option
        else:
            assert float(plain) == float(value), option
