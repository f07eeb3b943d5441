"""A Ctrl-C (or SIGTERM) that lands inside Python's import machinery comes again once the import step is over.

Raised inside importlib's own code (between a module lock's ``_imp.acquire_lock()`` and the
``try`` that releases it), a KeyboardInterrupt left the interpreter's import lock held for good,
and the next import on any thread hung (`relay run` stuck at its end). These tests land real
signals on real importlib frames; the exact lost-lock instant cannot be hit on purpose, so they
check the rule that avoids it: nothing is raised while the main thread is inside importlib.
"""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import pytest

from orchestrator.engine.signals import (
    IMPORT_MACHINERY,
    Terminated,
    interrupts_outside_imports,
    terminate_as_interrupt,
    terminated_by_signal,
)
from tests.unit.orchestrator.engine.test_terminations_kept import sigterm_restored

__all__ = ["sigterm_restored"]  # the fixture (SIGTERM's handler and the received flag put back), used by name

SIGNAL_WAIT_S = 30.0  # an upper bound for a redelivered signal to arrive, not a figure under test


def importlib_frame() -> FrameType:
    """A live frame of importlib's own code: the caller of a meta path finder's ``find_spec``."""
    seen: list[FrameType] = []

    class Spy:
        def find_spec(self, name: str, path: object, target: object = None) -> None:
            seen.append(sys._getframe(1))

    sys.meta_path.insert(0, Spy())
    try:
        with pytest.raises(ModuleNotFoundError):
            importlib.import_module("relay_no_such_module_for_this_test")
    finally:
        sys.meta_path.pop(0)
    assert seen[0].f_code.co_filename in IMPORT_MACHINERY
    return seen[0]


def wait_for_signal() -> None:
    deadline = time.monotonic() + SIGNAL_WAIT_S
    while time.monotonic() < deadline:
        time.sleep(0.01)


def test_a_ctrl_c_inside_importlib_is_raised_after_it_not_there() -> None:
    frame = importlib_frame()
    with interrupts_outside_imports():
        handler = signal.getsignal(signal.SIGINT)
        try:
            handler(signal.SIGINT, frame)  # lands in importlib: not raised there
        except KeyboardInterrupt:
            pytest.fail("the Ctrl-C was raised inside importlib")
        with pytest.raises(KeyboardInterrupt):
            wait_for_signal()  # the same Ctrl-C, delivered again outside importlib


def test_a_ctrl_c_anywhere_else_is_raised_where_it_lands() -> None:
    with interrupts_outside_imports():
        handler = signal.getsignal(signal.SIGINT)
        with pytest.raises(KeyboardInterrupt):
            handler(signal.SIGINT, sys._getframe())


def test_the_handler_before_the_block_is_put_back() -> None:
    before = signal.getsignal(signal.SIGINT)
    with interrupts_outside_imports():
        assert signal.getsignal(signal.SIGINT) is not before
    assert signal.getsignal(signal.SIGINT) is before


@pytest.fixture
def module_held_by_another_thread(tmp_path: Path) -> Iterator[tuple[str, threading.Event, threading.Thread]]:
    """A module whose import, begun on another thread, waits for an event: its module lock stays taken."""
    name = f"relay_held_module_{os.getpid()}"
    (tmp_path / f"{name}.py").write_text(
        "import threading\nRELEASE = threading.Event()\nimport builtins\nbuiltins._relay_held_import(RELEASE)\n"
    )
    started, release = threading.Event(), threading.Event()

    def hold(event: threading.Event) -> None:
        started.set()
        release.wait(SIGNAL_WAIT_S)

    import builtins

    builtins._relay_held_import = hold  # type: ignore[attr-defined]
    sys.path.insert(0, str(tmp_path))
    importer = threading.Thread(target=importlib.import_module, args=(name,), daemon=True)
    importer.start()
    assert started.wait(SIGNAL_WAIT_S)
    try:
        yield name, release, importer
    finally:
        release.set()
        importer.join(SIGNAL_WAIT_S)
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)
        del builtins._relay_held_import  # type: ignore[attr-defined]


def main_thread_waits_in_importlib() -> bool:
    frame = sys._current_frames().get(threading.main_thread().ident or 0)
    return frame is not None and frame.f_code.co_filename in IMPORT_MACHINERY


def test_a_real_ctrl_c_while_an_import_waits_for_its_lock_ends_after_the_import(
    module_held_by_another_thread: tuple[str, threading.Event, threading.Thread],
) -> None:
    """The main thread waits on another thread's module lock (inside importlib) when the Ctrl-C comes."""
    name, release, _ = module_held_by_another_thread

    def interrupt_then_release() -> None:
        deadline = time.monotonic() + SIGNAL_WAIT_S
        while not main_thread_waits_in_importlib() and time.monotonic() < deadline:
            time.sleep(0.01)
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)  # wakes the wait, in importlib
        time.sleep(0.2)
        release.set()

    imported: list[str] = []
    with interrupts_outside_imports():
        threading.Thread(target=interrupt_then_release, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            module = importlib.import_module(name)
            imported.append(module.__name__)  # the import ended whole
            wait_for_signal()
    assert imported == [name]


def test_sigterm_inside_importlib_is_raised_after_it_too(sigterm_restored: None) -> None:
    frame = importlib_frame()
    terminate_as_interrupt()
    handler = signal.getsignal(signal.SIGTERM)
    try:
        handler(signal.SIGTERM, frame)
    except Terminated:
        pytest.fail("the SIGTERM was raised inside importlib")
    assert not terminated_by_signal()
    with pytest.raises(Terminated):
        wait_for_signal()
    assert terminated_by_signal()


def test_the_python_apis_runs_get_the_same_rule_and_give_the_callers_handler_back() -> None:
    """``relay.run`` / ``relay.resume`` in a notebook: the kernel's interrupt is a SIGINT too."""
    from orchestrator.cli.api.running import handled

    frame = importlib_frame()
    before = signal.getsignal(signal.SIGINT)
    reached: list[str] = []

    def command(args: object) -> None:
        try:
            signal.getsignal(signal.SIGINT)(signal.SIGINT, frame)
        except KeyboardInterrupt:
            pytest.fail("the Ctrl-C was raised inside importlib")
        reached.append("after the signal")
        wait_for_signal()

    with pytest.raises(KeyboardInterrupt):
        handled(command, argparse.Namespace(run_id="r1"), None)
    assert reached == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is before
