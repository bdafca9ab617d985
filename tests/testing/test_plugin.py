"""The pytest plugin, as a user's project gets it: through the entry point."""

import os
import textwrap

APPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps")


def user_tests(tmp_path, source):
    """A user's test file of C{source} in C{tmp_path}."""
    (tmp_path / "test_user.py").write_text(textwrap.dedent(source))
    return tmp_path


def test_marker_fixture_and_factory(tmp_path, run_pytest):
    folder = user_tests(
        tmp_path,
        """
        import pytest
        from twistbridge import Bridge

        @pytest.mark.bridge("testkit_app:bridge")
        def test_marker(bridge_client):
            assert bridge_client.rpc("add", 2, 3) == 5

        def test_factory(bridge_client_factory):
            app = Bridge()
            app.rpc_function(lambda: "mine", name="who")
            assert bridge_client_factory(app).rpc("who") == "mine"

        def test_no_app(bridge_client):
            pass
        """,
    )
    result = run_pytest(folder, tmp_path, APPS)
    assert "2 passed, 1 error" in result.stdout, result.stdout + result.stderr
    assert "bridge_client needs an app: define a `bridge` fixture" in result.stdout
