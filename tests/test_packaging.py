"""A plain, non-editable `pip install .` into a fresh venv ships the twistd plugin."""

import os
import shutil
import subprocess
import sys
import venv

import pytest

# Under pytest-xdist, these tests run in one worker, and the venv is made
# once a run (fresh_venv).
pytestmark = [pytest.mark.xdist_group("packaging"), pytest.mark.long]

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory):
    """
    A fresh venv with the package `pip install`ed from a copy of the
    sources, made once a run (the module's tests run in one worker).
    """

    def build(folder):
        target = folder / "venv"
        # (no pip of its own: this pip installs into it, and without
        # byte-compiling the dependencies, most of an install's time)
        venv.create(target, with_pip=False)
        python = str(target / "bin" / "python")
        # Install from a copy of the sources, as `pip install .` of a clone would.
        source = folder / "src"
        shutil.copytree(
            ROOT,
            source,
            ignore=shutil.ignore_patterns(
                ".venv", ".git", "build", "*.egg-info", "__pycache__"
            ),
        )
        subprocess.run(
            [
                *(sys.executable, "-m", "pip", "--python", python, "install"),
                *("--quiet", "--no-compile", str(source)),
            ],
            check=True,
            env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
        )

    folder = tmp_path_factory.mktemp("packaging")
    build(folder)
    return folder / "venv"


def site_packages(target):
    out = subprocess.run(
        [
            str(target / "bin" / "python"),
            "-c",
            "import sysconfig; print(sysconfig.get_paths()['purelib'])",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def test_plugin_file_lands_in_site_packages(fresh_venv):
    plugins = os.path.join(site_packages(fresh_venv), "twisted", "plugins")
    assert os.path.isfile(os.path.join(plugins, "twistbridge_plugin.py"))
    # Twisted's own twisted/plugins/__init__.py, never one of ours.
    with open(os.path.join(plugins, "__init__.py")) as f:
        assert "pluginPackagePaths" in f.read()


def test_installed_not_editable(fresh_venv):
    out = subprocess.run(
        [
            str(fresh_venv / "bin" / "python"),
            "-c",
            "import twistbridge; print(twistbridge.__file__)",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    assert out.stdout.strip().startswith(site_packages(fresh_venv))


def test_twistd_lists_bridge(fresh_venv):
    out = subprocess.run(
        [str(fresh_venv / "bin" / "twistd"), "--help"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert out.returncode == 0, out.stderr
    assert any(line.split()[:1] == ["bridge"] for line in out.stdout.splitlines()), (
        out.stdout
    )
    sub = subprocess.run(
        [str(fresh_venv / "bin" / "twistd"), "bridge", "--help"],
        capture_output=True,
        text=True,
        cwd="/",
    )
    assert sub.returncode == 0, sub.stderr
    for option in (
        "--port",
        "--igor-port",
        "--bgpy-port",
        "--app",
        "--max-upload-size",
    ):
        assert option in sub.stdout


def test_no_plugins_init_in_sources():
    assert not os.path.exists(os.path.join(ROOT, "twisted", "plugins", "__init__.py"))
    assert sys.version_info >= (3, 9)


def test_version_has_one_source_and_types_ship(fresh_venv):
    """The metadata's version is twistbridge.__version__; py.typed is installed."""
    out = subprocess.run(
        [
            str(fresh_venv / "bin" / "python"),
            "-c",
            "import importlib.metadata as m, twistbridge, os;"
            "print(m.version('twistbridge'), twistbridge.__version__,"
            " os.path.isfile(os.path.join(os.path.dirname(twistbridge.__file__), 'py.typed')))",
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd="/",
    )
    import twistbridge

    assert out.stdout.split() == [
        twistbridge.__version__,
        twistbridge.__version__,
        "True",
    ]
