"""Signals that stop a command as Ctrl-C does (docs/RELIABILITY.md, "Stopping a command").

SIGTERM is what `timeout`, `kill`, SLURM (at the time limit, scancel) and `docker stop`
send; Python's default is to die at once, which loses what Ctrl-C saves (training's
interrupted.pth) and leaves what Ctrl-C cleans (predict's temporary folder, test's run
folder). `installed()` makes SIGTERM, and the signal named by $AVSBENCH_STOP_SIGNAL (SLURM's
pre-emption warning, e.g. `#SBATCH --signal=USR1@90` with AVSBENCH_STOP_SIGNAL=USR1), call
the process's CURRENT SIGINT handler: where a command defers Ctrl-C (training stops at the
next step boundary and saves), these signals are deferred the same way; elsewhere they
raise KeyboardInterrupt. `exit_status()` is the status of a command stopped so: 128 + the
signal's number (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a killed process.
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from types import FrameType

from avsbench.errors import SetupError

STOP_SIGNAL_ENV = "AVSBENCH_STOP_SIGNAL"
received: list[int] = []  # the stop signals this process got, in order


def _signal_named(text: str) -> signal.Signals:
    """USR1, SIGUSR1 or 10 -> signal.SIGUSR1; SetupError naming the variable otherwise."""
    name = text.strip().upper()
    try:
        if name.isdigit():
            return signal.Signals(int(name))
        return signal.Signals[name if name.startswith("SIG") else "SIG" + name]
    except (KeyError, ValueError):
        raise SetupError(
            f"{STOP_SIGNAL_ENV}={text!r} is not a signal name; use e.g. USR1 (with sbatch "
            "--signal=USR1@90) or unset it"
        ) from None


def stop_signals() -> list[signal.Signals]:
    """SIGTERM and the signal of $AVSBENCH_STOP_SIGNAL (if set)."""
    found = [signal.SIGTERM]
    configured = os.environ.get(STOP_SIGNAL_ENV, "").strip()
    if configured:
        sig = _signal_named(configured)
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            raise SetupError(f"{STOP_SIGNAL_ENV}={configured}: {sig.name} cannot be handled")
        if sig not in found and sig != signal.SIGINT:
            found.append(sig)
    return found


def _forward(signum: int, frame: FrameType | None) -> None:
    received.append(signum)
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler):
        handler(signum, frame)  # e.g. resume.DeferredInterrupt: stop at the next step
    else:  # SIG_IGN (nohup) or SIG_DFL: stop now, as Python's own Ctrl-C does
        raise KeyboardInterrupt


@contextlib.contextmanager
def installed() -> Iterator[None]:
    """The stop signals behave as Ctrl-C while the block runs (main thread only; elsewhere
    nothing changes); the previous handlers are put back after it. A command starts with
    none received."""
    received.clear()
    previous = {}
    try:
        for sig in stop_signals():
            previous[sig] = signal.signal(sig, _forward)
    except ValueError:  # not the main thread
        pass
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def exit_status() -> int:
    """128 + the last stop signal received, else 130 (Ctrl-C)."""
    return 128 + received[-1] if received else 130


def stopped_message() -> str:
    """What a stopped command prints last."""
    if not received:
        return "interrupted"
    return f"interrupted ({signal.Signals(received[-1]).name})"


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold Ctrl-C and the stop signals while the block runs (e.g. making a folder and
    recording that it is ours): one that arrives is acted on when the block ends."""
    signals = {signal.SIGINT, *stop_signals()}
    try:
        previous = signal.pthread_sigmask(signal.SIG_BLOCK, signals)
    except (AttributeError, OSError, ValueError):  # no POSIX signal masks
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)
