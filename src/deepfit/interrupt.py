"""Polite stops: SIGTERM and SIGINT ask for a stop at the next chunk boundary; a second one stops at once.

A preemptible machine or a batch scheduler sends SIGTERM with seconds to spare; Ctrl-C sends
SIGINT. JAX cannot be interrupted inside a compiled call, so the handler only records the signal;
the training loop looks at it between chunks (:class:`deepfit.train.callbacks.stop_on_signal.StopOnSignal`),
saves a checkpoint and ends the run with :class:`Interrupted`, which the command line turns into one
line saying how to resume and the conventional exit status (128 + the signal: 143, 130).

A second signal means "now": a second SIGTERM exits the process at once; a second SIGINT raises
KeyboardInterrupt at once (so a notebook's kernel survives a double Ctrl-C). Nothing is lost by either,
since every file deepfit writes is written atomically and a checkpoint replaces its predecessor only
once complete.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_pending: int | None = None
_depth = 0
_previous: dict[int, object] = {}
_hooks: list[Callable[[int], None]] = []


class Interrupted(Exception):
    """Training stopped on a signal; the message says what was kept and how to continue."""

    def __init__(self, signum: int, message: str, runs: Sequence[str] = ()):
        super().__init__(message)
        self.signum, self.runs = signum, list(runs)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum


def name(signum: int) -> str:
    try:
        return signal.Signals(signum).name
    except ValueError:
        return f"signal {signum}"


def pending() -> int | None:
    """The signal received since :func:`stop_politely` was entered, or None."""
    return _pending


def request(signum: int = signal.SIGTERM) -> None:
    """Ask for a stop as a signal would (tests, and a driver forwarding its own signal)."""
    _handle(signum, None)


def _handle(signum: int, frame) -> None:
    global _pending
    if _pending is not None:
        sys.stderr.write(f"deepfit: {name(signum)} again: stopping now (the last checkpoint stays valid)\n")
        sys.stderr.flush()
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        os._exit(128 + signum)
    _pending = signum
    sys.stderr.write(f"deepfit: {name(signum)}: stopping after the current chunk of steps, with a checkpoint "
                     f"(send it again to stop at once)\n")
    sys.stderr.flush()
    for hook in list(_hooks):
        hook(signum)


def add_hook(hook: Callable[[int], None]) -> None:
    """Call ``hook(signum)`` on the first signal (from the handler: keep it short, e.g. ``os.kill``)."""
    _hooks.append(hook)


def remove_hook(hook: Callable[[int], None]) -> None:
    if hook in _hooks:
        _hooks.remove(hook)


@contextmanager
def stop_politely(signals: Sequence[int] = SIGNALS) -> Iterator[None]:
    """Within, ``signals`` set the flag instead of killing the process; nested uses share one flag.

    Handlers can only be installed from the main thread; elsewhere this does nothing.
    """
    global _depth, _pending
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth == 0:
        _pending = None
        for s in signals:
            _previous[s] = signal.signal(s, _handle)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            for s, handler in _previous.items():
                signal.signal(s, handler)
            _previous.clear()
