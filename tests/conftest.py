"""Shared test set-up.

Qt runs offscreen and numpy uses one BLAS thread; both must be set before
PySide6 or numpy is first imported, hence at the top of this file. Nothing here
imports PySide6 at module level: the simulator's tests must run without it.

Qt tests carry ``@pytest.mark.qt``. For them an autouse fixture checks, after
pytest-qt has closed the widgets the test registered with ``qtbot.addWidget``,
that no other top-level widget is left over (a leak), closes any it finds and
fails the test. Settings always go to a temporary file, never the user's.
"""

from __future__ import annotations

import os

os.environ["QT_QPA_PLATFORM"] = os.environ.get("GFL_TEST_QPA", "offscreen")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import pytest  # noqa: E402

# Qt-created helper windows that live on their own and are not ours to close.
_QT_INTERNAL_WINDOWS = ("QTipLabel", "QComboBoxPrivateContainer")


@pytest.fixture(scope="session")
def qapp_args():
    return ["gradient-flow-lab-tests"]


@pytest.fixture(scope="session")
def _isolated_qsettings(tmp_path_factory):
    """Point every default-constructed QSettings at a temporary folder, so nothing a
    test does can reach the user's real settings."""
    from PySide6.QtCore import QSettings

    folder = str(tmp_path_factory.mktemp("qsettings"))
    for fmt in (QSettings.Format.NativeFormat, QSettings.Format.IniFormat):
        for scope in (QSettings.Scope.UserScope, QSettings.Scope.SystemScope):
            QSettings.setPath(fmt, scope, folder)
    return folder


def _key(widget) -> int:
    import shiboken6

    return shiboken6.getCppPointer(widget)[0]


def _flush_deletes(app, collect: bool = True) -> None:
    """Run pending deleteLater()s, and collect Python cycles: pyqtgraph's context menus
    are parentless QMenus owned by their (cyclic) Python items."""
    import gc

    from PySide6.QtCore import QCoreApplication, QEvent

    def flush_events():
        for _ in range(2):
            app.processEvents()
            QCoreApplication.sendPostedEvents(None, QEvent.Type.DeferredDelete)

    flush_events()
    if collect:
        gc.collect()
        flush_events()


def _new_windows(app, before: set) -> list:
    return [w for w in app.topLevelWidgets()
            if _key(w) not in before and w.metaObject().className() not in _QT_INTERNAL_WINDOWS]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.gfl_call_failed = report.failed
    return report


@pytest.fixture(autouse=True)
def _qt_window_guard(request):
    """For ``qt`` tests: fail on top-level widgets the test leaked, and close them."""
    if request.node.get_closest_marker("qt") is None:
        yield
        return
    request.getfixturevalue("_isolated_qsettings")
    app = request.getfixturevalue("qapp")
    before = {_key(w) for w in app.topLevelWidgets()}
    yield
    # pytest keeps the test's fixture values until the very end of teardown; a deleted
    # window's Python side would keep pyqtgraph's parentless menus alive until then
    funcargs = getattr(request.node, "funcargs", None)
    if isinstance(funcargs, dict):
        funcargs.clear()
    _flush_deletes(app, collect=False)
    if _new_windows(app, before):  # perhaps only waiting for the garbage collector
        _flush_deletes(app)
    leaked = _new_windows(app, before)
    names = [f"{w.metaObject().className()}({w.objectName() or w.windowTitle()!r})"
             for w in leaked]
    for w in leaked:
        w.close()
        w.deleteLater()
    if leaked:
        _flush_deletes(app)
    # a failed test's traceback keeps its widgets alive: that is not a leak of its own
    if leaked and not getattr(request.node, "gfl_call_failed", False):
        pytest.fail(f"the test left top-level widgets behind: {', '.join(names)}; "
                    "register them with qtbot.addWidget or give them a parent")


@pytest.fixture
def settings(tmp_path, _isolated_qsettings):
    """QSettings in a temporary ini file."""
    from PySide6.QtCore import QSettings

    s = QSettings(str(tmp_path / "settings.ini"), QSettings.Format.IniFormat)
    yield s
    s.sync()


@pytest.fixture
def tiny_experiment():
    """A small, quick network that still shows the problem: 4 tanh layers of 8 units
    on xor, 100 points."""
    from simulator.data import DataSpec
    from simulator.experiment import Experiment, TrainSpec
    from simulator.spec import uniform_spec

    return Experiment(
        name="Tiny tanh",
        description="Four tanh layers of eight units on xor.",
        network=uniform_spec(2, 2, depth=4, width=8, activation="tanh"),
        data=DataSpec(kind="xor", n_samples=100, noise=0.1),
        training=TrainSpec(optimizer="sgd", lr=0.1, batch_size=16),
        seed=0,
    )


@pytest.fixture
def controller(qapp, tiny_experiment):
    """A SimulationController built at once (no background compile) on tiny_experiment."""
    from ui.controller import SimulationController

    c = SimulationController(tiny_experiment)
    yield c
    c.shutdown()
    c.deleteLater()


@pytest.fixture
def editor(controller):
    from ui.commands import Editor

    return Editor(controller)
