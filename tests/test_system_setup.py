"""What the tests need beyond Python: .ci/system-packages.sh (the Debian packages, `make system`, which
`make test` runs first, and .ci/run) and the Qt guard of tests/conftest.py (support/qt.py): a machine
without them stops in one line before any test, or fails the Qt tests alone with the reason, never in
Qt's abort of the whole run.

The script's apt-get, sudo, id and dpkg-query are replaced by small fakes on PATH where the test needs a
machine other than this one; nothing here installs anything."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from support import ROOT, qt

SCRIPT = ROOT / ".ci" / "system-packages.sh"
BASH = shutil.which("bash")


def fake_bin(folder: Path, **scripts: str) -> Path:
    """A folder of executables: each keyword a program name (``_`` for ``-``), each value its bash body."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, body in scripts.items():
        path = folder / name.replace("_", "-")
        path.write_text(f"#!{BASH}\n{body}\n")
        path.chmod(0o755)
    return folder


def run_script(*args: str, env: dict, path: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, **env}
    if path is not None:
        env["PATH"] = path
    return subprocess.run([BASH, str(SCRIPT), *args], env=env, capture_output=True, text=True, timeout=120)


def package_list(tmp_path: Path, *names: str) -> dict:
    """The environment that makes the script check ``names`` instead of .ci/system-packages."""
    listed = tmp_path / "packages"
    listed.write_text("# a comment line\n" + "".join(f"{n}  # why\n" for n in names))
    return {"BIOUNET_SYSTEM_PACKAGES": str(listed), "BIOUNET_SYSTEM_CHECK": ""}


# ------------------------------------------------------------------------------ .ci/system-packages.sh


def test_every_package_of_the_list_is_installed_here():
    """dpkg-query's answer read right: on this machine (set up by the script) nothing is missing."""
    for mode in ("--check", "--missing"):
        done = run_script(mode, env={"BIOUNET_SYSTEM_CHECK": ""})
        assert (done.returncode, done.stdout.strip(), done.stderr) == (0, "", ""), mode
    assert qt.missing_packages() == []


def test_a_missing_package_without_root_or_sudo_stops_in_one_line_naming_the_command(tmp_path):
    env = package_list(tmp_path, "xvfb", "biounet-no-such-package")
    fakes = fake_bin(tmp_path / "bin", id="echo 1000", sudo="exit 1")  # a user without passwordless sudo
    line = (
        "biounet: the tests need Debian packages that are missing: biounet-no-such-package; "
        "run: sudo apt-get install -y biounet-no-such-package"
    )
    for mode in ((), ("--check",)):
        done = run_script(*mode, env=env, path=f"{fakes}:{os.environ['PATH']}")
        assert (done.returncode, done.stdout, done.stderr) == (1, "", line + "\n"), mode
    missing = run_script("--missing", env=env)
    assert (missing.returncode, missing.stdout) == (0, "biounet-no-such-package\n")


@pytest.mark.parametrize("user", ["root", "passwordless sudo"])
def test_a_missing_package_is_installed_with_apt_get(tmp_path, user):
    """As root, or through ``sudo -n``: apt-get install (non-interactive), and after an apt-get update
    when the first install fails (a fresh machine's empty package lists); then checked again."""
    log, installed = tmp_path / "log", tmp_path / "installed"
    fakes = fake_bin(
        tmp_path / "bin",
        id="echo 0" if user == "root" else "echo 1000",
        sudo=f'[ "$1" = -n ] || exit 1; shift; echo "sudo" >> {log}; exec "$@"',
        apt_get=f'echo "$DEBIAN_FRONTEND $*" >> {log}\n'
        f'[ "$1" = update ] && touch {tmp_path}/updated && exit 0\n'
        f"[ -e {tmp_path}/updated ] || exit 100\n"
        f"touch {installed}",
        dpkg_query=f'[ -e {installed} ] && echo "biounet-fake ii " && exit 0; exit 1',
    )
    done = run_script(env=package_list(tmp_path, "biounet-fake"), path=f"{fakes}:{os.environ['PATH']}")
    assert done.returncode == 0, done.stderr
    calls = log.read_text().splitlines()
    if user != "root":
        assert calls[0] == "sudo" and calls.count("sudo") >= 3  # sudo -n true, then each apt-get
        calls = [c for c in calls if c != "sudo"]
    assert calls == [
        "noninteractive install -y -q biounet-fake",
        "noninteractive update -q",
        "noninteractive install -y -q biounet-fake",
    ]
    assert "installing the Debian packages the tests need" in done.stderr


def test_apt_get_failing_ends_in_one_line_naming_the_command(tmp_path):
    fakes = fake_bin(tmp_path / "bin", id="echo 0", apt_get="exit 100", dpkg_query="exit 1")
    done = run_script(env=package_list(tmp_path, "biounet-fake"), path=f"{fakes}:{os.environ['PATH']}")
    assert done.returncode == 1
    assert done.stderr.splitlines()[-1] == (
        "biounet: apt-get could not install the Debian packages the tests need (exit status 100; still missing: "
        "biounet-fake); run: apt-get update && apt-get install -y biounet-fake"
    )


def test_without_dpkg_it_stops_in_one_line_unless_told_to_skip(tmp_path):
    empty = fake_bin(tmp_path / "bin", id="echo 1000")  # a PATH without dpkg-query and apt-get
    done = run_script(env={"BIOUNET_SYSTEM_CHECK": ""}, path=str(empty))
    assert done.returncode == 1 and done.stdout == "" and len(done.stderr.splitlines()) == 1
    assert "no dpkg-query/apt-get" in done.stderr and "xvfb" in done.stderr
    assert "make test SYSTEM_CHECK=skip" in done.stderr
    skipped = run_script(env={"BIOUNET_SYSTEM_CHECK": "skip"}, path=str(empty))
    assert (skipped.returncode, skipped.stdout, skipped.stderr) == (0, "", "")
    assert run_script("--missing", env={}, path=str(empty)).returncode == 2


MAKE_RECURSION = ("MAKELEVEL", "MAKEFLAGS", "MFLAGS", "MAKEOVERRIDES", "MAKE_TERMOUT", "MAKE_TERMERR")


def test_make_test_runs_the_system_check_before_any_test_and_stops_there(tmp_path):
    make = shutil.which("make")
    assert make, "make is needed to check the Makefile"
    # as a user's shell runs it, even when this suite itself runs under `make test-all` (CI): a make
    # inherited through MAKELEVEL/MAKEFLAGS would print "Entering directory" lines of its own
    outer = {key: value for key, value in os.environ.items() if key not in MAKE_RECURSION}
    for goal in ("test", "test-all"):
        dry = subprocess.run([make, "-n", goal], cwd=ROOT, env=outer, capture_output=True, text=True, timeout=60)
        assert dry.stdout.index(".ci/system-packages.sh") < dry.stdout.index("pytest"), dry.stdout
    # a package missing, no sudo: `make test` ends with the one line; setup (here `false`) never runs
    env = {**outer, **package_list(tmp_path, "biounet-no-such-package")}
    env["PATH"] = f"{fake_bin(tmp_path / 'bin', id='echo 1000', sudo='exit 1')}:{env['PATH']}"
    args = [make, "test", f"VENV={tmp_path / 'venv'}", "PYTHON=false"]
    done = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode != 0 and done.stdout == ""
    ours, *rest = done.stderr.splitlines()
    assert ours == (
        "biounet: the tests need Debian packages that are missing: biounet-no-such-package; "
        "run: sudo apt-get install -y biounet-no-such-package"
    )
    assert len(rest) == 1 and "system" in rest[0] and "Error 1" in rest[0], rest  # make's own trailer only


# ------------------------------------------------------------------------------ the Qt guard


def bare_env(tmp_path: Path, **changes: str) -> dict:
    """This environment without a display, with a PATH that has bash, dpkg-query and id but no Xvfb."""
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    tools = tmp_path / "tools"
    tools.mkdir(exist_ok=True)
    for name in ("bash", "dpkg-query", "id"):
        found = shutil.which(name)
        assert found, f"{name} is needed by this test"
        (tools / name).symlink_to(found)
    env["PATH"] = str(tools)
    env.update(changes)
    return env


def broken_library(tmp_path: Path, soname: str) -> str:
    """A folder for LD_LIBRARY_PATH in which ``soname`` is not a library: as if its package were broken."""
    folder = tmp_path / "broken"
    folder.mkdir(exist_ok=True)
    (folder / soname).write_text("not a library\n")
    return str(folder)


def test_qt_imports_and_a_qapplication_starts_here():
    assert qt.import_problem() is None
    assert os.environ.get("DISPLAY"), "pytest-xvfb sets DISPLAY to its Xvfb"
    assert qt.start_problem() is None


def test_without_a_display_or_xvfb_the_check_says_so_and_names_the_install_command(tmp_path):
    env = bare_env(tmp_path)
    message = qt.start_problem(env)
    assert message.startswith("the napari/Qt tests cannot run here: no display: DISPLAY is not set and Xvfb")
    assert "apt-get install --reinstall -y xvfb xauth libgl1" in message  # dpkg lists them all as installed
    assert "\n" not in message
    env.update(package_list(tmp_path, "xvfb", "biounet-no-such-package"))  # now dpkg says one is missing
    assert qt.start_problem(env).endswith(
        "the Debian packages biounet-no-such-package are missing; run: "
        f"{'' if os.geteuid() == 0 else 'sudo '}apt-get install -y biounet-no-such-package (or: make system)"
    )
    with_xvfb = qt.start_problem({**env, "PATH": os.environ["PATH"]})  # installed but not started
    assert "DISPLAY is not set although Xvfb is installed" in with_xvfb and "pytest-xvfb" in with_xvfb


def test_a_broken_library_of_qt_is_named(tmp_path):
    display = os.environ["DISPLAY"]
    plugin = qt.start_problem({**os.environ, "LD_LIBRARY_PATH": broken_library(tmp_path, "libxcb-cursor.so.0")})
    assert "a QApplication did not start (killed by signal 6" in plugin, plugin
    assert "libxcb-cursor0 is needed to load the Qt xcb platform plugin" in plugin and "apt-get install" in plugin
    gui = qt.start_problem({**os.environ, "LD_LIBRARY_PATH": broken_library(tmp_path, "libEGL.so.1")})
    assert "Qt does not import (ImportError: " in gui and "libEGL.so.1" in gui and "apt-get install" in gui
    gone = qt.start_problem({**os.environ, "DISPLAY": ":4711"})  # a display nobody serves
    assert "no display: Qt could not connect to DISPLAY=':4711'" in gone
    assert os.environ["DISPLAY"] == display


QT_TEST = "tests/integrations/napari/test_widget.py::test_a_4d_layer_is_refused_before_any_work"
PLAIN_TESTS = "tests/integrations/napari/test_sample.py"  # napari's plugin, no Qt


def run_pytest(env: dict, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-W", "ignore", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.mark.slow  # a pytest run of its own (napari imported): 10-20 s
def test_without_a_display_the_qt_tests_fail_with_the_reason_and_the_others_run(tmp_path):
    """The machine of the report: no Xvfb, so no display; Qt would abort the run in pytest-qt's qapp."""
    done = run_pytest(bare_env(tmp_path), QT_TEST, PLAIN_TESTS)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out  # tests failed; not 134 (abort), not 3 (internal error)
    assert "Fatal Python error" not in out and "INTERNALERROR" not in out
    assert "1 passed, 1 error" in out, out
    assert "ERROR at setup of test_a_4d_layer_is_refused_before_any_work" in out
    assert "no display: DISPLAY is not set and Xvfb is not installed" in out and "apt-get install" in out


@pytest.mark.slow
def test_when_qt_does_not_import_the_qt_tests_fail_with_the_reason_and_the_others_run(tmp_path):
    """libEGL broken: Qt's import fails, which would stop pytest-qt's set-up and the whole run; and
    test_widget.py does not import (a collection error would stop the run too)."""
    env = bare_env(tmp_path, LD_LIBRARY_PATH=broken_library(tmp_path, "libEGL.so.1"))
    reader = "tests/integrations/napari/test_reader.py::test_an_ome_zarr_store_opens_lazily_as_multiscale_layers"
    done = run_pytest(env, "tests/integrations/napari/test_widget.py", reader, PLAIN_TESTS)
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Fatal Python error" not in out and "INTERNALERROR" not in out
    assert "1 failed, 1 passed, 1 error" in out, out
    assert "FAILED tests/integrations/napari/test_widget.py::needs_qt" in out
    assert "Qt does not import (ImportError: " in out and "libEGL.so.1" in out
    assert "so test_widget.py does not import" in out and "apt-get install" in out
