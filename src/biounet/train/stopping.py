"""Stopping training on request: Ctrl-C (SIGINT) and SIGTERM are held until the step in flight is
counted, then raise KeyboardInterrupt, so the weights, the step number and metrics.jsonl always
agree when last.pt is saved. Outside the main thread (where Python cannot install signal
handlers) both helpers do nothing."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)  # Ctrl-C, and what schedulers send before a kill


@contextlib.contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the block ends, then raise KeyboardInterrupt: the step in flight
    completes and is counted, so the weights, the step number and metrics.jsonl always agree when
    last.pt is saved."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum: int, frame: FrameType | None) -> None:
        if not received:
            print("stop requested: finishing the current step, then saving last.pt", file=sys.stderr, flush=True)
        received.append(signum)

    # a signal the process was started with ignored (a background job's SIGINT) stays ignored
    previous = {sig: signal.signal(sig, hold) for sig in STOP_SIGNALS if signal.getsignal(sig) is not signal.SIG_IGN}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if received:
        raise KeyboardInterrupt


def sigterm_as_interrupt() -> Callable[[], Any]:
    """Make SIGTERM stop training as Ctrl-C does (last.pt saved, the --resume command printed);
    returns the function that restores the previous handler."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    return lambda: signal.signal(signal.SIGTERM, previous)
