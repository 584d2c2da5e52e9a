"""Whether Qt can run the napari tests here, and what to install when it cannot.

Qt does not raise when it cannot start: without a display, or without a library of its xcb platform
plugin, ``QApplication(...)`` prints "could not connect to display" / "Could not load the Qt platform
plugin" and aborts the process ("Fatal Python error: Aborted"), which in pytest-qt's ``qapp`` ends the
whole test run. So the question is asked in a subprocess (:func:`start_problem`), whose abort ends only
itself; tests/conftest.py asks it before pytest-qt creates its QApplication, and asks at start-up whether
Qt imports at all (:func:`import_problem`: a missing libGL/libEGL stops pytest-qt's own set-up, and with it
every test). Either answer fails the Qt tests alone, with :func:`explain`'s message: the missing piece and
the command that installs it (the Debian packages of .ci/system-packages that dpkg says are missing, as
.ci/system-packages.sh, the script of `make system`, reports them).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ROOT / ".ci" / "system-packages"
PACKAGES_SCRIPT = ROOT / ".ci" / "system-packages.sh"

# imports Qt (qtpy: the binding napari uses), then starts an application as pytest-qt's qapp does
_PROBE = """
import sys
try:
    from qtpy.QtWidgets import QApplication
except Exception as exc:
    print(f"IMPORT {type(exc).__name__}: " + (str(exc).splitlines() or [""])[0], flush=True)
    sys.exit(3)
app = QApplication(["biounet-qt-check"])
print("STARTED", app.platformName(), flush=True)
"""
# Qt's lines that say what is missing, in the order they are worth reading (Qt prints the one about
# xcb-cursor0 whenever its xcb plugin fails, whatever the reason)
_KEY_LINES = (
    "cannot open shared object file",
    "is needed to load the Qt xcb platform plugin",
    "Could not load the Qt platform plugin",
    "no Qt platform plugin could be initialized",
)


def package_names(env: Mapping[str, str] | None = None) -> list[str]:
    """The Debian packages of .ci/system-packages (or of the list BIOUNET_SYSTEM_PACKAGES names), in order."""
    names = []
    for line in Path((env or os.environ).get("BIOUNET_SYSTEM_PACKAGES") or PACKAGES).read_text().splitlines():
        names += line.split("#", 1)[0].split()
    return names


def missing_packages(env: Mapping[str, str] | None = None) -> list[str] | None:
    """The packages of .ci/system-packages that dpkg says are not installed ([] when none is), or None when
    this machine cannot tell (not Debian: no bash or no dpkg-query)."""
    bash = shutil.which("bash", path=(env or os.environ).get("PATH"))
    if bash is None:
        return None
    try:
        run = subprocess.run(
            [bash, str(PACKAGES_SCRIPT), "--missing"],
            env=None if env is None else dict(env),
            capture_output=True,
            text=True,
            timeout=60,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return run.stdout.split() if run.returncode == 0 else None


def install_hint(env: Mapping[str, str] | None = None) -> str:
    """The command that installs what the Qt tests need, for this machine."""
    missing = missing_packages(env)
    sudo = "" if os.geteuid() == 0 else "sudo "
    if missing:
        return f"the Debian packages {' '.join(missing)} are missing; run: {sudo}apt-get install -y {' '.join(missing)}"
    everything = " ".join(package_names(env))
    if missing is None:
        return (
            f"install Xvfb and Qt's libraries (on Debian or Ubuntu: {sudo}apt-get install -y {everything}; "
            "elsewhere their equivalents)"
        )
    return (
        f"dpkg lists every package of .ci/system-packages as installed, so one is broken or hidden (PATH, "
        f"LD_LIBRARY_PATH); run: {sudo}apt-get install --reinstall -y {everything}"
    )


def explain(problem: str, env: Mapping[str, str] | None = None, hint: str | None = None) -> str:
    """The one-line message a Qt test fails with: what is wrong, then what to run (``hint``, by default
    the command that installs the missing packages)."""
    return f"the napari/Qt tests cannot run here: {problem}; {hint or install_hint(env) + ' (or: make system)'}"


def import_problem() -> str | None:
    """Why Qt's widgets do not import in this process (a missing shared library), or None when they do.
    An import fails with an exception, never an abort, so this is asked in-process."""
    try:
        from qtpy import QtWidgets  # noqa: F401
    except Exception as exc:  # noqa: BLE001 - ImportError, qtpy's PythonQtError, ...
        first = (str(exc).splitlines() or [""])[0]
        return f"Qt does not import ({type(exc).__name__}: {first})"
    return None


def start_problem(env: Mapping[str, str] | None = None, timeout: float = 120.0) -> str | None:
    """Why a QApplication cannot start with ``env`` (default: this process's environment, where
    pytest-xvfb has set DISPLAY to its Xvfb), asked in a subprocess; None when it starts. The answer
    names the missing piece (no display, Xvfb not installed, a library of Qt's xcb plugin) and the
    command that installs it."""
    env = dict(os.environ if env is None else env)
    try:
        run = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return explain(f"a QApplication did not start within {timeout:g} s (DISPLAY={env.get('DISPLAY', '')!r})", env)
    if run.returncode == 0 and "STARTED" in run.stdout:
        return None
    out = run.stdout.strip().splitlines()
    if run.returncode == 3 and out and out[-1].startswith("IMPORT "):
        return explain(f"Qt does not import ({out[-1].removeprefix('IMPORT ')})", env)
    how = f"killed by signal {-run.returncode}" if run.returncode < 0 else f"exit status {run.returncode}"
    lines = [ln.strip() for ln in run.stderr.splitlines() if ln.strip()]
    display = env.get("DISPLAY") or env.get("WAYLAND_DISPLAY")
    if not display:
        xvfb = shutil.which("Xvfb", path=env.get("PATH", ""))
        if xvfb is not None:  # installed, not started
            problem = f"no display: DISPLAY is not set although Xvfb is installed ({xvfb})"
            return explain(problem, env, "run pytest with pytest-xvfb enabled (without -p no:xvfb or --no-xvfb)")
        return explain(
            f"no display: DISPLAY is not set and Xvfb is not installed (not on PATH), so pytest-xvfb started no "
            f"virtual screen and a QApplication aborts ({how})",
            env,
        )
    if any("could not connect to display" in ln for ln in lines):
        return explain(f"no display: Qt could not connect to DISPLAY={display!r} ({how})", env)
    said = list(dict.fromkeys(ln for key in _KEY_LINES for ln in lines if key in ln))[:3] or lines[-1:]
    return explain(f"a QApplication did not start ({how}: {' / '.join(said) or 'nothing on stderr'})", env)
