"""How a driver that starts or joins Ray ends on Ctrl-C and SIGTERM, and the exit codes it ends with.

Ray installs SIGTERM handlers of its own as it starts, and a signal that lands inside Ray's start-up
(an at-fork hook, a weakref callback, Ray's C++ client) was lost, hung the run or aborted it. The
blocks here hold or raise those signals so that `relay run` and `relay tune` end as interrupted
(130) or terminated (143), the run recorded INTERRUPTED. ``ray_session`` wraps Ray's start in them;
`relay run` and `relay tune` read the codes and ``terminated_by_signal``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

EXIT_INTERRUPTED = 130  # 128 + SIGINT, as the CLI ends an interrupted command
EXIT_TERMINATED = 143  # 128 + SIGTERM: what timeout, systemd and batch schedulers expect of a program they stopped
JOIN_SIGNAL_GRACE_S = 3.0  # a join stuck in Ray's C++ client this long after a Ctrl-C or SIGTERM is abandoned


class Terminated(SystemExit):
    """SIGTERM in a driver that started or joined Ray (``terminate_as_interrupt``): exit 143.

    A SystemExit, as Ray's own handler raised, so every ``except (KeyboardInterrupt, SystemExit)``
    that records a run INTERRUPTED and closes its MLflow runs KILLED sees it as before; a caller
    that does not catch it still exits 143. Raised inside ``ray.wait`` or ``ray.get`` it comes out
    as Ray's SystemExit(1) instead: ``terminated_by_signal`` tells that one apart.
    """

    def __init__(self) -> None:
        super().__init__(EXIT_TERMINATED)


_SIGTERM_RECEIVED = threading.Event()  # set by the handler ``terminate_as_interrupt`` installs


def terminated_by_signal() -> bool:
    """Whether a SIGTERM reached this process through ``terminate_as_interrupt``'s handler."""
    return _SIGTERM_RECEIVED.is_set()


def terminate_as_interrupt() -> None:
    """Make SIGTERM end this driver as Ctrl-C does (the run recorded INTERRUPTED), with exit 143 (``Terminated``).

    Why: ``ray.init`` leaves three SIGTERM handlers behind. Its Python one raised SystemExit(15), and
    a local instance's node replaced it by one that stops every Ray process from inside the handler
    and raises SystemExit(1); under both, the core worker's C++ failure handler (Abseil's, which
    covers SIGTERM) printed "*** SIGTERM received ... PC: @ ..." three times, and the process ended
    in SIGABRT (exit 134, the shell's "Aborted"). Setting the handler here replaces them for SIGTERM
    alone: the C++ handler keeps reporting real crashes (SIGSEGV, SIGABRT), and Ray's processes are
    still stopped, by the executor's shutdown (or Ray's exit hook). Only the main thread can set it.
    """
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)


@contextlib.contextmanager
def signals_held_through_shutdown(ray: Any) -> Iterator[None]:
    """A Ctrl-C or SIGTERM during ``ray.shutdown`` in the block is raised once Ray has stopped
    (``interrupts_after_the_step``); a second raises at once.

    Why: Ray's core worker restores, as it is deleted, the SIGTERM action it found when it started (the
    default, from before ``terminate_as_interrupt``), while ``signal.getsignal`` still names Relay's handler. A
    SIGTERM from then on (Ray's processes being stopped, about a second; a run that ended, its MLflow record
    being finished) killed the process outright: no line, its MLflow runs left RUNNING. The handler is set
    again in the hook ``ray.shutdown`` calls next (the local node's ``kill_all_processes``, set on that node
    alone for the block), and once more as the block ends. Held rather than raised there, the signal does not cut Ray's
    stop short, which would leave its processes running.
    """
    node = getattr(getattr(getattr(ray, "_private", None), "worker", None), "_global_node", None)
    kill = getattr(node, "kill_all_processes", None)
    if kill is not None:

        def restored_then_kill(*args: Any, **kwargs: Any) -> Any:
            _sigterm_handler_restored()
            return kill(*args, **kwargs)

        node.kill_all_processes = restored_then_kill
    try:
        with interrupts_after_the_step():  # which sets the handler itself again as it ends
            yield
    finally:
        if kill is not None:
            del node.kill_all_processes  # the node's own method again


def _sigterm_handler_restored() -> None:
    """Set SIGTERM's Python handler again (``signals_held_through_shutdown``), where it is one, in the main thread."""
    handler = signal.getsignal(signal.SIGTERM)
    if callable(handler) and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)


def _raise_terminated(signum: int, frame: Any) -> None:
    if _redelivered_outside_imports(signum, frame):
        return
    _SIGTERM_RECEIVED.set()
    raise Terminated


# Python's import machinery: code objects of importlib's frozen bootstrap modules carry these file names.
IMPORT_MACHINERY = ("<frozen importlib._bootstrap>", "<frozen importlib._bootstrap_external>")
REDELIVERY_S = 0.05  # how soon a signal that landed inside the import machinery comes again


@contextlib.contextmanager
def interrupts_outside_imports() -> Iterator[None]:
    """During the block a Ctrl-C raises KeyboardInterrupt as usual, except inside Python's import machinery.

    Why: Python runs a signal handler between any two bytecodes of the main thread, also inside
    importlib's own code. Raised there, between ``_imp.acquire_lock()`` and the ``try`` that releases
    it (the weakref callback of a module lock), the interpreter's global import lock stayed held for
    good: Python printed "Exception ignored in: <function _get_module_lock.<locals>.cb>", the run
    went on, and the next import on any thread waited forever (seen as `relay run` hanging in its
    end, the tracking thread stuck importing SQLAlchemy for the MLflow store). A Ctrl-C that lands
    there now comes again ``REDELIVERY_S`` later, by which time the import step has ended (and again,
    for as long as the main thread is inside the machinery: bounded by the import). SIGTERM's
    handler (``terminate_as_interrupt``) does the same. Only the main thread can set a handler;
    elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, _interrupt_outside_imports)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def _interrupt_outside_imports(signum: int, frame: Any) -> None:
    if not _redelivered_outside_imports(signum, frame):
        raise KeyboardInterrupt


def _redelivered_outside_imports(signum: int, frame: Any) -> bool:
    """Whether ``frame`` (where the signal landed) is importlib's own code; if so, send ``signum`` again soon."""
    if frame is None or frame.f_code.co_filename not in IMPORT_MACHINERY:
        return False
    redelivery = threading.Timer(REDELIVERY_S, os.kill, (os.getpid(), signum))
    redelivery.daemon = True  # a process that ends meanwhile does not wait for it
    redelivery.start()
    return True


@contextlib.contextmanager
def terminations_kept(ray: Any) -> Iterator[None]:
    """A SIGTERM while Ray starts raises ``Terminated`` (exit 143) at once, Ray stopped; Ray's own handlers are not set.

    Why: ``ray.init`` sets its SIGTERM handlers as it starts (one raises SystemExit(15), a local node's
    drains for 30 s, then stops Ray's processes and raises SystemExit(1)), so a SIGTERM in the seconds
    before ``terminate_as_interrupt`` ended `relay run` with 15 (or 1), its resume line up to 30 s late.
    Held until the start ended, as ``interrupts_kept`` holds a Ctrl-C, it was not prompt: a SIGTERM to
    the whole group (``timeout``) stops Ray's new GCS too, and ray.init then waited 60 s for it. So it
    raises where it lands, as Ray's did; one dropped there ("Exception ignored in", a weakref callback)
    is raised when the block ends, and a start that failed after one ends as terminated too. Python
    prints a dropped one ("Exception ignored in ... Traceback"); that print is kept out, as the
    exception is not lost. Only the main thread can set a handler.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    noted: list[int] = []

    def note(signum: int, frame: Any) -> None:
        noted.append(signum)
        _raise_terminated(signum, frame)

    previous = signal.signal(signal.SIGTERM, note)
    try:
        with _ray_sigterm_handlers_skipped(ray), _dropped_terminations_unprinted():
            yield
    except BaseException as exc:
        if not noted:
            raise
        ray.shutdown()
        if isinstance(exc, Terminated):
            raise
        raise Terminated from exc
    finally:
        signal.signal(signal.SIGTERM, previous)
    if noted:  # raised where something dropped it
        ray.shutdown()
        _SIGTERM_RECEIVED.set()
        raise Terminated


@contextlib.contextmanager
def _dropped_terminations_unprinted() -> Iterator[None]:
    """Python's report of a ``Terminated`` it dropped (an at-fork hook, a weakref callback) is not printed.

    Why: ``terminations_kept`` raises it again when the block ends, so the run still exits 143 with
    Relay's line; the report was a traceback above that line (filelock's at-fork hook, as Ray forks).
    Every other unraisable exception goes to the hook that was there before.
    """
    previous = sys.unraisablehook

    def report(unraisable: Any) -> None:
        if not isinstance(unraisable.exc_value, Terminated):
            previous(unraisable)

    sys.unraisablehook = report
    try:
        yield
    finally:
        sys.unraisablehook = previous


@contextlib.contextmanager
def _ray_sigterm_handlers_skipped(ray: Any) -> Iterator[None]:
    """Ray's ``set_sigterm_handler`` does nothing in the block: the handler ``terminations_kept`` set stays."""
    utils = getattr(getattr(ray, "_private", None), "utils", None)
    original = getattr(utils, "set_sigterm_handler", None)
    if original is None:  # another Ray: nothing to skip
        yield
        return
    utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        utils.set_sigterm_handler = original


HELD_CTRL_C_LINE = b"\nrelay: stopping once Ray's start ends; press Ctrl-C again to stop now\n"


@contextlib.contextmanager
def interrupts_kept(on_interrupt: Callable[[], None] = lambda: None) -> Iterator[list[int]]:
    """Hold a Ctrl-C that comes during the block until it ends; then call ``on_interrupt`` and raise it.

    Raised where it lands, a Ctrl-C while Ray is imported and started was lost or hung the run:
    Python runs a signal handler between any two bytecodes, also inside a weakref callback
    (importlib's module locks, during `import ray`) or an at-fork hook (logging's, each time Ray
    forks a process), where the exception is printed ("Exception ignored in ...") and dropped. The
    run then went on to the end, or, dropped before logging's hook released its lock, hung on the
    next log call. So the first Ctrl-C is only noted, and the block (bounded: Ray's start-up) ends
    first; a second one raises at once, for a block that does not end. ``on_interrupt`` stops what
    the block started. The first Ctrl-C is answered at once (``HELD_CTRL_C_LINE``): a loaded machine's Ray
    start takes half a minute, which the terminal spent silent. Only the main thread can set a handler;
    elsewhere the block runs as it is.
    The block gets the list of interrupts noted so far (empty: none), to tell what they caused.
    """
    # os.write, not print: the main thread may be inside a print to stderr when the handler runs
    with _interrupts_noted(on_first=lambda: os.write(2, HELD_CTRL_C_LINE)) as noted:
        yield noted
    if noted:
        on_interrupt()
        raise KeyboardInterrupt


@contextlib.contextmanager
def interrupts_after_the_step() -> Iterator[None]:
    """A Ctrl-C or SIGTERM during the block (a short step that must happen whole) is raised when the block ends; a
    second raises at once.

    Why: the Runner writes how a run ended, then notes it for `relay run`'s end (``Runner.ended_as``). A
    Ctrl-C between the two (CI, once: it landed in the ledger write's rename) left the run FINISHED in its
    ledger but KILLED in MLflow, said nothing, and had the driver wait for the tracker: forever, when
    MLflow's store was still being created under another process's lock. Held to the end of the step, the
    signal comes once both are done, and `relay run` ends as after any Ctrl-C or SIGTERM once the run ended
    (the MLflow runs closed as the ledger says, MLflow given a bounded time). A SIGTERM is held only where a
    Python handler takes it (`relay run`'s ``terminate_as_interrupt``), which then gets it; its default
    action ends the process wherever it lands, as before. Only the main thread can set a handler; elsewhere
    the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    on_sigterm = signal.getsignal(signal.SIGTERM)
    held = {signal.SIGINT: signal.getsignal(signal.SIGINT)}
    if callable(on_sigterm):
        held[signal.SIGTERM] = on_sigterm
    noted: list[int] = []

    def note(signum: int, frame: Any) -> None:
        noted.append(signum)
        if len(noted) > 1:  # asked twice: the user means now
            _raise_held(signum, held)

    for signum in held:
        signal.signal(signum, note)
    try:
        yield
    finally:
        for signum, handler in held.items():
            signal.signal(signum, handler)
    if noted:
        _raise_held(noted[0], held)


def _raise_held(signum: int, held: dict[int, Any]) -> None:
    """What ``interrupts_after_the_step`` held, raised: KeyboardInterrupt for a Ctrl-C, the SIGTERM handler's own."""
    if signum == signal.SIGINT:
        raise KeyboardInterrupt
    held[signum](signum, None)


@contextlib.contextmanager
def one_more_interrupt_held() -> Iterator[None]:
    """While an interrupted run says how it ended and records it: one more Ctrl-C is held (and dropped), a third
    raises at once.

    Why: a Ctrl-C often comes twice (a double press; `timeout` forwarding its group's SIGINT to the run,
    which had it already), and the second, landing inside the first one's handling, cut off the line
    saying how to resume (QA: 3 of 7 interrupts of a run waiting for another's stage). A third means now:
    a record write to a store that stopped answering must not hold the user for its timeouts. Only the
    main thread can set a handler; elsewhere the block runs as it is.
    """
    with _interrupts_noted(on_first=lambda: None):
        yield


@contextlib.contextmanager
def _interrupts_noted(on_first: Callable[[], object]) -> Iterator[list[int]]:
    """During the block a Ctrl-C is noted, not raised: the first calls ``on_first``, a second raises at once.

    Yields the Ctrl-Cs noted so far. Only the main thread can set a handler; elsewhere the block runs
    as it is and nothing is noted.
    """
    if threading.current_thread() is not threading.main_thread():
        yield []
        return
    noted: list[int] = []
    previous = signal.getsignal(signal.SIGINT)

    def note(signum: int, frame: Any) -> None:
        noted.append(signum)
        if len(noted) > 1:  # asked twice: the user means now
            raise KeyboardInterrupt
        on_first()

    signal.signal(signal.SIGINT, note)
    try:
        yield noted
    finally:
        signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def join_abandoned_on_signal(address: str | None) -> Iterator[None]:
    """While this driver joins the cluster at ``address``, a Ctrl-C or SIGTERM still ends the process (130, 143).

    Why: joining an address where no GCS answers (a port taken by something else, a GCS gone
    behind a firewall), ray.init waits inside Ray's C++ client, retrying "Failed to connect to
    GCS" for good, and Python's signal handlers run only between bytecodes of the main thread,
    so Ctrl-C and SIGTERM did nothing; only SIGKILL ended it. The signal still reaches the
    wakeup fd, which a thread watches: the join is given ``JOIN_SIGNAL_GRACE_S`` to end by itself
    (``interrupts_kept`` then raises as usual), else the process exits at once, 130 (SIGTERM: 143).
    Joining writes nothing and starts no local process, so nothing is left behind. A local start (``address``
    None or "local") is bounded and keeps ``interrupts_kept``'s handling alone; so does a thread
    other than the main one, which cannot own the wakeup fd.
    """
    if address in (None, "local") or threading.current_thread() is not threading.main_thread():
        yield
        return
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    joined = threading.Event()
    previous_fd = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)

    def watch() -> None:
        with contextlib.suppress(OSError):
            received = b"\0"
            while received and received[0] not in (signal.SIGINT, signal.SIGTERM):  # other signals: not ours
                received = os.read(read_end, 1)
            if received and not joined.wait(JOIN_SIGNAL_GRACE_S):
                os.write(2, f"\nrelay: interrupted while joining the Ray cluster at {address}\n".encode())
                os._exit(EXIT_TERMINATED if received[0] == signal.SIGTERM else EXIT_INTERRUPTED)

    watcher = threading.Thread(target=watch, daemon=True, name="relay-join-signals")
    watcher.start()
    try:
        yield
    finally:
        joined.set()
        signal.set_wakeup_fd(previous_fd)
        os.close(write_end)  # the watcher's read returns (empty) and it ends
        watcher.join(JOIN_SIGNAL_GRACE_S)
        os.close(read_end)
