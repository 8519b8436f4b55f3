"""Background threads of `avsbench predict`: reading ahead of the model, and writing the
overlay behind it (docs/PREDICT.md "Safety and limits", Speed).

Decoding (PyAV), colour conversion and resizing (swscale, cv2), the log-mel front end
and x264 release the GIL, so on a machine with spare cores they run beside the model's
forward pass instead of between two of them. Nothing else changes: the model sees the
same inputs in the same order, so the masks are the ones a single thread computes.

- `Prefetch`: runs a generator in a thread, at most `depth` items ahead of the consumer.
- `OverlayThread`: `writers.OverlayFeed` in a thread, fed masks as the model predicts.

Both hand an exception of their thread to the caller (at its next call), and stop their
thread on `close()` / `abort()`, which the caller runs in a `finally` (Ctrl-C, SIGTERM).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np

JOIN_POLL_S = 0.2  # waits are cut into pieces this long so that Ctrl-C is seen promptly


class _Done:
    """End of the items (error: what the thread raised, or None)."""

    def __init__(self, error: BaseException | None) -> None:
        self.error = error


class Prefetch:
    """Iterate the items of `make_items()`, produced in a background thread.

    depth: items made ahead of the consumer (memory: depth items at most are waiting).
    An exception in the thread is raised by the iteration at its place in the sequence.
    close(): stop the thread (it closes its generator, running its `finally` blocks).
    """

    def __init__(self, make_items: Callable[[], Iterator[Any]], depth: int = 2) -> None:
        self.items: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self._work, args=(make_items,), name="avsbench-read", daemon=True
        )
        self.thread.start()

    def _put(self, item: Any) -> bool:
        """Queue `item`, waiting for room; False once the consumer has stopped."""
        while not self.stop.is_set():
            try:
                self.items.put(item, timeout=JOIN_POLL_S)
                return True
            except queue.Full:
                continue
        return False

    def _work(self, make_items: Callable[[], Iterator[Any]]) -> None:
        error = None
        try:
            items = make_items()
            try:
                for item in items:
                    if not self._put(item):
                        break
            finally:
                close = getattr(items, "close", None)
                if close is not None:
                    close()
        except BaseException as exc:  # handed to the consumer
            error = exc
        self._put(_Done(error))

    def __iter__(self) -> Iterator[Any]:
        while True:
            item = self.items.get()
            if isinstance(item, _Done):
                if item.error is not None:
                    raise item.error
                return
            yield item

    def close(self) -> None:
        self.stop.set()
        while self.thread.is_alive():
            try:  # make room so that a waiting put sees the stop
                self.items.get_nowait()
            except queue.Empty:
                pass
            self.thread.join(JOIN_POLL_S)


class OverlayThread:
    """`OverlayFeed` (add / finish / abort) with its writing done in a thread.

    add(j, mask) hands in a mask and returns at once, unless `max_waiting` masks are
    already waiting to be shown (then it waits for the writer: memory stays bounded).
    Only the writer thread pops masks; the writer needs at most one window's masks past
    the frame it writes, so a bound of two windows' masks never blocks it.
    """

    def __init__(self, feed: Any, max_waiting: int) -> None:
        self.feed, self.max_waiting = feed, max_waiting
        self.changed = threading.Condition()
        feed.lock = self.changed  # add() and the writer share the masks
        self.added = 0  # masks handed in so far (the writer waits for this to change)
        self.last: int | None = None  # the final sample number, once finish() is called
        self.stopped = False
        self.error: BaseException | None = None
        self.frames: int | None = None
        self.thread = threading.Thread(target=self._work, name="avsbench-overlay", daemon=True)
        self.thread.start()

    def _work(self) -> None:
        try:
            seen = -1
            while True:
                with self.changed:
                    while not self.stopped and self.last is None and self.added == seen:
                        self.changed.wait()
                    if self.stopped:
                        return
                    seen, last = self.added, self.last
                self.feed.pump(last, stop=lambda: self.stopped)
                if last is not None and not self.stopped:
                    self.frames = self.feed.finish(last + 1)
                    return
                with self.changed:
                    self.changed.notify_all()  # masks were shown: room for add()
        except BaseException as exc:  # handed to the caller
            self.error = exc
        finally:
            with self.changed:
                self.changed.notify_all()

    def _raise(self) -> None:
        if self.error is not None:
            error, self.error = self.error, None
            raise error

    def add(self, j: int, mask: np.ndarray) -> None:
        self._raise()
        with self.changed:
            while len(self.feed.masks) >= self.max_waiting and self.thread.is_alive():
                self.changed.wait(JOIN_POLL_S)
            self.feed.add(j, mask)
            self.added += 1
            self.changed.notify_all()
        self._raise()

    def finish(self, num_samples: int) -> int:
        """Write the remaining frames and close the file; the number of frames written."""
        with self.changed:
            self.last = num_samples - 1
            self.changed.notify_all()
        while self.thread.is_alive():
            self.thread.join(JOIN_POLL_S)
        self._raise()
        assert self.frames is not None
        return self.frames

    def abort(self) -> None:
        """Stop the thread and close the file without finishing it."""
        with self.changed:
            self.stopped = True
            self.changed.notify_all()
        while self.thread.is_alive():
            self.thread.join(JOIN_POLL_S)
        self.feed.abort()
