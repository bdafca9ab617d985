"""
Igor's own tests, run against twistbridge.igor.

The copies (test_core.py, test_server.py, test_integration.py, mock.py,
server_instance.py) differ from Igor's only in their imports and in how
test_integration.py starts the server (see igor_instance.py).  Tests that
call Igor's name-mangled private methods are deselected; README.md lists
them with the reason.
"""

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)  # Igor's tests import "mock" from their own folder

#: test id -> why it is not run (README.md says the same).
PRIVATE = {
    name: "calls a name-mangled private method of Igor's IgorServer"
    for name in (
        "test_register_new_client",
        "test_adding_multiple_clients_with_same_id",
        "test_unregister_new_client",
        "test_add_new_stream",
        "test_remove_stream",
        "test_remove_process",
        "test_main_handler",
        "test_main_handler_for_nonexisting_action",
        "test_main_handler_for_message_without_specified_action",
    )
}


def pytest_collection_modifyitems(config, items):
    """Deselect the tests of Igor's private internals."""
    kept, dropped = [], []
    for item in items:
        in_server = os.path.basename(str(item.fspath)) == "test_server.py"
        if in_server and item.name in PRIVATE and HERE in str(item.fspath):
            dropped.append(item)
        else:
            kept.append(item)
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = kept
