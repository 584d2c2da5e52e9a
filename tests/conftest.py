"""Shared fixtures. The ISBI 2012 data must be present: tests fail (never skip) without it.

Qt (the napari tests, through pytest-qt and napari's make_napari_viewer) is guarded so that a machine
without a display or without Qt's libraries fails those tests alone, each with one message naming the
missing piece and the command that installs it (support/qt.py), instead of ending the whole run: Qt
aborts the process when a QApplication cannot start, and pytest-qt stops pytest's start-up when Qt
does not import."""

from pathlib import Path

import pytest
import torch
from support import ISBI_DIR, qt

torch.set_num_threads(2)

# Asked while pytest starts (this conftest is loaded before the plugins are configured): a missing
# libGL/libEGL makes Qt's import fail, and pytest-qt's configure hook would then stop every test.
QT_IMPORT_PROBLEM = qt.import_problem()


def pytest_addoption(parser, pluginmanager):
    """Runs when this conftest is registered, before any plugin's pytest_configure: without an importable
    Qt, pytest-qt is left out and its fixtures (below) fail with the reason."""
    if QT_IMPORT_PROBLEM is not None:
        pluginmanager.set_blocked("pytest-qt")


@pytest.fixture(scope="session")
def isbi_dir() -> Path:
    assert (ISBI_DIR / "train-volume.tif").is_file(), (
        f"the ISBI 2012 data is expected at {ISBI_DIR} (../shared/data/isbi2012 from the project root)"
    )
    return ISBI_DIR


@pytest.fixture(scope="session")
def isbi_data(isbi_dir):
    from biounet.data import read_isbi

    return read_isbi(isbi_dir)


if QT_IMPORT_PROBLEM is None:

    @pytest.fixture(scope="session")
    def qapp_cls():
        """pytest-qt's class for its qapp, asked for before qapp creates the QApplication: a QApplication
        must first start in a subprocess (on the display pytest-xvfb set), else every Qt test fails with
        the reason instead of Qt aborting the run."""
        problem = qt.start_problem()
        if problem is not None:
            pytest.fail(problem, pytrace=False)
        from pytestqt.qt_compat import qt_api

        return qt_api.QtWidgets.QApplication

else:

    @pytest.fixture(scope="session")
    def qapp():
        """pytest-qt's fixtures, standing in for it (left out): they fail with the reason."""
        pytest.fail(qt.explain(QT_IMPORT_PROBLEM), pytrace=False)

    @pytest.fixture
    def qtbot(qapp):
        pass  # not reached: qapp fails

    class _QtUnavailable(pytest.Item):
        """Stands for the tests of a module that cannot be imported without Qt: fails with the reason."""

        def __init__(self, *, problem: str, **kwargs):
            super().__init__(**kwargs)
            self.problem = problem

        def runtest(self):
            pytest.fail(self.problem, pytrace=False)

        def reportinfo(self):
            return self.path, None, self.name

    class _QtGuardedModule(pytest.Module):
        """A test module that, when its import fails while Qt does not import, is one failing test saying
        so, instead of a collection error that would stop the whole run."""

        def collect(self):
            try:
                return super().collect()
            except Exception as exc:  # noqa: BLE001 - pytest's CollectError for an ImportError, or any other
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[-1].strip()
                first = first.removeprefix("E").strip()  # pytest's CollectError shows the error as "E   ..."
                if first in QT_IMPORT_PROBLEM:
                    problem = qt.explain(f"{QT_IMPORT_PROBLEM}, so {self.path.name} does not import")
                else:
                    problem = qt.explain(f"{self.path.name} does not import ({first}) and {QT_IMPORT_PROBLEM}")
                return [_QtUnavailable.from_parent(self, name="needs_qt", problem=problem)]

    def pytest_pycollect_makemodule(module_path, parent):
        return _QtGuardedModule.from_parent(parent, path=module_path)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(item, call):
        """Any other failure of this run may be Qt's too (a test that imports a Qt module itself): it says so."""
        report = yield
        if report.failed and not isinstance(item, _QtUnavailable) and "napari/Qt tests" not in str(report.longrepr):
            report.sections.append(("Qt does not import here", qt.explain(QT_IMPORT_PROBLEM)))
        return report
