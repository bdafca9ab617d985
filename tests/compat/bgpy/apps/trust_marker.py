"""A task module that leaves a mark when imported, for the trust tests."""

import os
from shutil import copyfile as open_file  # noqa: F401  (a function of another module)

_MARK = os.environ.get("BGPY_IMPORT_MARKER")
if _MARK:
    with open(_MARK, "a", encoding="utf-8") as f:
        f.write("imported\n")


def init_task():
    return {"request_count": 0}


def exec_task(client, state, exec_args):
    state["request_count"] += 1
    return state


def exit_task(client, state, exit_args):
    return None


def touch(path):
    """A plain function with an effect: a pickle must never call it."""
    with open(path, "w", encoding="utf-8") as f:
        f.write("called\n")
    return path


class NotATask:
    """A class: never a task."""
