"""Shared test set-up.

Qt runs offscreen and numpy uses one BLAS thread; both must be set before
PySide6 or numpy is first imported, hence at the top of this file. Nothing here
imports PySide6 at module level: the simulator's tests must run without it.

Qt tests carry ``@pytest.mark.qt``. For them an autouse fixture checks, after
pytest-qt has closed the widgets the test registered with ``qtbot.addWidget``,
that no other new top-level window is left open (a leak: neither registered nor
owned by a registered widget), closes any it finds and fails the test. Settings
always go to a temporary file, never the user's.
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


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_teardown(item, nextitem):
    # Note the widgets the test gave to qtbot.addWidget before pytest-qt closes them
    # (and forgets them): those, and the windows they own, are not leaks.
    refs = getattr(item, "qt_widgets", None) or []
    item.gfl_registered = {_key(w) for w in (ref() for ref, _ in refs) if w is not None}
    return (yield)


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.when == "call":
        item.gfl_call_failed = report.failed
    return report


def _leaked_windows(app, before: set, registered: set) -> list:
    """New top-level windows still open that no widget registered with qtbot owns.

    pytest-qt closes registered widgets and deleteLater()s them, but outside an event
    loop nothing is deleted yet, so ownership decides, not existence. Hidden widgets
    are not counted: pyqtgraph keeps parentless, never-shown menus and control panels
    alive for as long as their plot items live."""
    leaked = []
    for w in app.topLevelWidgets():
        if (_key(w) in before or not w.isVisible()
                or w.metaObject().className() in _QT_INTERNAL_WINDOWS):
            continue
        owner = w
        while owner is not None and _key(owner) not in registered:
            owner = owner.parentWidget()
        if owner is None:
            leaked.append(w)
    return leaked


@pytest.fixture(autouse=True)
def _collect_garbage_between_tests(request):
    """Python's cyclic garbage collector runs whenever allocations pile up, which in a Qt
    test can be in the middle of a paint; collecting a pyqtgraph item's wrapper there
    deletes a C++ item the scene is drawing, and the process dies. So: no automatic
    collection while a test runs, one full collection after it, when nothing paints.

    The core's tests (tests/simulator) never paint, so they keep the automatic
    collector: a full collection after each of them cost about 0.1-0.3 s, minutes over
    the suite."""
    import gc

    if "simulator" in request.node.path.parent.parts[-2:]:
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


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
    app.processEvents()
    leaked = _leaked_windows(app, before, getattr(request.node, "gfl_registered", set()))
    names = [f"{w.metaObject().className()}({w.objectName() or w.windowTitle()!r})"
             for w in leaked]
    for w in leaked:
        w.close()
        w.deleteLater()
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
