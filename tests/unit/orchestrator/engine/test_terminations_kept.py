"""``terminations_kept``: a SIGTERM while Ray starts is held until ``ray.init`` ends, then exits 143.

A real SIGTERM to this process; a stand-in for the ``ray`` module that, as ``ray.init`` does, asks
to set its own SIGTERM handler (one that raised SystemExit(15): `relay run` exited 15).
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from orchestrator.engine import signals
from orchestrator.engine.signals import EXIT_TERMINATED, Terminated, terminated_by_signal, terminations_kept


class StartingRay:
    """The parts of ``ray`` the hold touches: ``_private.utils.set_sigterm_handler`` and ``shutdown``."""

    def __init__(self) -> None:
        self.stopped = 0
        self._private = SimpleNamespace(utils=SimpleNamespace(set_sigterm_handler=self.set_sigterm_handler))

    @staticmethod
    def set_sigterm_handler(handler) -> None:
        signal.signal(signal.SIGTERM, handler)

    def shutdown(self) -> None:
        self.stopped += 1

    def init(self) -> None:
        """Ray's first step: its handler, which exits 15 on SIGTERM."""
        self._private.utils.set_sigterm_handler(lambda signum, frame: sys.exit(signum))


@pytest.fixture(autouse=True)
def sigterm_restored() -> Iterator[None]:
    before = signal.getsignal(signal.SIGTERM)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)
        signals._SIGTERM_RECEIVED.clear()  # other tests see a process no SIGTERM reached


def test_a_sigterm_while_ray_starts_raises_143_at_once_stops_ray_and_keeps_rays_handler_out() -> None:
    ray = StartingRay()
    before = signal.getsignal(signal.SIGTERM)
    reached: list[str] = []
    with pytest.raises(Terminated) as raised, terminations_kept(ray):
        ray.init()  # Ray's handler, which raised SystemExit(15), is not set
        os.kill(os.getpid(), signal.SIGTERM)
        reached.append("after the signal")
    assert raised.value.code == EXIT_TERMINATED and terminated_by_signal()
    assert reached == [] and ray.stopped == 1
    assert signal.getsignal(signal.SIGTERM) is before
    assert ray._private.utils.set_sigterm_handler == StartingRay.set_sigterm_handler  # Ray's own again


def test_a_sigterm_dropped_where_it_landed_is_raised_when_the_start_ends_and_not_printed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Raised in a weakref callback (as during `import ray`) or an at-fork hook, Python drops it.

    Python's report of it ("Exception ignored in ... Traceback") was printed above Relay's line.
    """
    import gc
    import weakref

    class Started:
        pass

    reported: list[BaseException | None] = []
    monkeypatch.setattr(sys, "unraisablehook", lambda unraisable: reported.append(unraisable.exc_value))
    ray = StartingRay()
    finished: list[str] = []
    with pytest.raises(Terminated), terminations_kept(ray):
        thing = Started()
        keep = weakref.ref(thing, lambda _: os.kill(os.getpid(), signal.SIGTERM))  # lands in the callback
        del thing
        gc.collect()
        assert keep() is None
        finished.append("the start")
    assert finished == ["the start"] and ray.stopped == 1
    assert reported == []
    weakref.finalize(Started(), lambda: 1 / 0)  # another dropped exception is still reported
    gc.collect()
    assert [type(exc) for exc in reported] == [ZeroDivisionError]


def test_a_start_that_failed_after_a_sigterm_ends_as_terminated() -> None:
    """A SIGTERM to the whole group stops Ray's new processes too; ray.init's failure still ends as 143."""
    ray = StartingRay()
    with pytest.raises(Terminated) as raised, terminations_kept(ray):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
        except Terminated as exc:
            raise RuntimeError("Failed to start the dashboard") from exc
    assert isinstance(raised.value.__cause__, RuntimeError) and ray.stopped == 1


def test_a_start_without_a_sigterm_goes_on() -> None:
    ray = StartingRay()
    with terminations_kept(ray):
        ray.init()
    assert not terminated_by_signal() and ray.stopped == 0
