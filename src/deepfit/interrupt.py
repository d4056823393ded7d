"""Polite stops: SIGTERM and SIGINT ask for a stop at the next chunk boundary; a second one stops at once.

A preemptible machine or a batch scheduler sends SIGTERM with seconds to spare; Ctrl-C sends
SIGINT. JAX cannot be interrupted inside a compiled call, so the signal is only recorded;
the training loop looks at it between chunks (:class:`deepfit.train.callbacks.stop_on_signal.StopOnSignal`),
saves a checkpoint and ends the run with :class:`Interrupted`, which the command line turns into one
line saying how to resume and the conventional exit status (128 + the signal: 143, 130).

Python runs its signal handlers in the main thread between bytecodes, so while a compiled chunk
runs (an epoch, by default) a handler would wait for it: a second SIGTERM sent during a chunk used to
take effect only when the chunk ended. Signals are therefore counted by a watcher thread that reads
Python's wakeup file descriptor (``signal.set_wakeup_fd``: the C-level handler writes each signal's
number there at once, whatever the main thread is doing). The first signal sets the flag and tells
the workers (hooks) at once; a second SIGTERM exits the process at once. A second SIGINT raises
KeyboardInterrupt, so a notebook's kernel survives a double Ctrl-C: that can only happen in the main
thread, as soon as the compiled call in flight returns. Nothing is lost either way, since every file
deepfit writes is written atomically and a checkpoint replaces its predecessor only once complete.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import sys
import threading
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

SIGNALS = (signal.SIGTERM, signal.SIGINT)

_pending: int | None = None
_depth = 0
_previous: dict[int, object] = {}
_hooks: list[Callable[[int], None]] = []
_lock = threading.RLock()  # re-entered when a signal's handler interrupts the main thread inside it
_interrupt_main = False  # a second SIGINT came: the main thread raises KeyboardInterrupt when it can
_wakeup: tuple[socket.socket, socket.socket] | None = None  # (read end, write end) of the wakeup channel
_old_wakeup = -1


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
    _count(signum)
    _handle(signum, None)


def _count(signum: int) -> None:
    """One signal received: the first asks for a polite stop, a second stops now (see the module docstring).
    Called by the watcher thread, or by the main thread's handler for what the watcher has not read yet."""
    global _pending, _interrupt_main
    if _pending is not None:
        sys.stderr.write(f"deepfit: {name(signum)} again: stopping now (the last checkpoint stays valid)\n")
        sys.stderr.flush()
        if signum != signal.SIGINT:
            os._exit(128 + signum)
        _interrupt_main = True
        return
    _pending = signum
    sys.stderr.write(f"deepfit: {name(signum)}: stopping after the current chunk of steps, with a checkpoint "
                     f"(send it again to stop at once)\n")
    sys.stderr.flush()
    for hook in list(_hooks):
        hook(signum)


def _drain(wait: float | None) -> bool:
    """Count the signals waiting in the wakeup channel, waiting up to ``wait`` seconds for one (None: until
    one comes); False once the channel is closed. Reading and counting happen under one lock, so a handler
    that finds the channel empty knows the watcher has counted what it read."""
    channel = _wakeup
    if channel is None:
        return False
    try:
        select.select([channel[0]], [], [], wait)
        with _lock:
            data = channel[0].recv(64)
            if not data:
                return False
            for signum in data:
                if signum in _watched:
                    _count(signum)
    except BlockingIOError:
        return True
    except (OSError, ValueError):  # closed as the watched section ended
        return False
    return True


_watched: set[int] = set()


def _watch() -> None:
    while _drain(None):
        pass


def _handle(signum: int, frame) -> None:
    """The main thread's handler: count what the watcher has not read yet (the C handler may still be writing
    it when it was delivered to another thread: a moment's wait), then raise what must be raised."""
    global _interrupt_main
    _drain(0.05)
    if _interrupt_main:
        _interrupt_main = False
        raise KeyboardInterrupt


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
    global _depth, _pending, _wakeup, _old_wakeup, _interrupt_main
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    if _depth == 0:
        _pending, _interrupt_main = None, False
        _watched.clear()
        _watched.update(int(s) for s in signals)
        for s in signals:
            _previous[s] = signal.signal(s, _handle)
        reader, writer = socket.socketpair()
        reader.setblocking(False)
        writer.setblocking(False)
        _wakeup = (reader, writer)
        _old_wakeup = signal.set_wakeup_fd(writer.fileno(), warn_on_full_buffer=False)
        threading.Thread(target=_watch, name="deepfit-signals", daemon=True).start()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            signal.set_wakeup_fd(_old_wakeup)
            for s, handler in _previous.items():
                signal.signal(s, handler)
            _previous.clear()
            channel, _wakeup = _wakeup, None
            if channel is not None:
                channel[1].close()  # the watcher's select wakes, reads nothing and ends
                with _lock:
                    channel[0].close()
