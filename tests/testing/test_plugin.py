"""The pytest plugin, as a user's project gets it: through the entry point."""

import os
import subprocess
import sys
import textwrap

APPS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "apps")


def run_pytest(tmp_path, source):
    (tmp_path / "test_user.py").write_text(textwrap.dedent(source))
    env = dict(os.environ, PYTHONPATH=APPS)
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        cwd=str(tmp_path),
        env=env,
        timeout=120,
    )


def test_marker_fixture_and_factory(tmp_path):
    result = run_pytest(
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
    assert "2 passed, 1 error" in result.stdout, result.stdout + result.stderr
    assert "bridge_client needs an app: define a `bridge` fixture" in result.stdout
