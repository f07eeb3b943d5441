"""``interrupts_after_the_step``: a Ctrl-C or SIGTERM inside a short step is raised once the step has ended whole.

Real signals to this process. The Runner's own use (its FINISHED ledger write) is in test_runner.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from orchestrator.engine import signals
from orchestrator.engine.signals import Terminated, interrupts_after_the_step
from tests.unit.orchestrator.engine.toy import sigterm_as_relay_run_takes_it


@pytest.fixture
def relay_runs_sigterm() -> Iterator[None]:
    with sigterm_as_relay_run_takes_it():
        yield


@pytest.mark.parametrize("signum, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_signal_inside_the_step_comes_after_it(relay_runs_sigterm, signum, raised) -> None:
    steps: list[str] = []
    with pytest.raises(raised), interrupts_after_the_step():
        os.kill(os.getpid(), signum)
        steps.append("the rest of the step ran")
    assert steps == ["the rest of the step ran"]
    assert signals.terminated_by_signal() is (signum == signal.SIGTERM)  # exit 143, as for any SIGTERM


@pytest.mark.parametrize("signum, raised", [(signal.SIGINT, KeyboardInterrupt), (signal.SIGTERM, Terminated)])
def test_a_second_signal_raises_at_once(relay_runs_sigterm, signum, raised) -> None:
    steps: list[str] = []
    with pytest.raises(raised), interrupts_after_the_step():
        os.kill(os.getpid(), signum)
        os.kill(os.getpid(), signum)
        steps.append("the rest of the step ran")
    assert steps == []


def test_the_handlers_are_put_back(relay_runs_sigterm) -> None:
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    with interrupts_after_the_step():
        assert signal.getsignal(signal.SIGTERM) is not before[1]  # held
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before


def test_sigterm_without_a_python_handler_is_left_to_its_default_action() -> None:
    """Outside `relay run` (a notebook's relay.run): SIGTERM's default ends the process wherever it lands, as before;
    the step does not take it over."""
    before = signal.getsignal(signal.SIGTERM)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    try:
        with interrupts_after_the_step():
            assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler  # Ctrl-C is held
    finally:
        signal.signal(signal.SIGTERM, before)
