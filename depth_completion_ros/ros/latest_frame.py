"""Newest-frame-wins hand-off between the executor (callbacks) and the processing thread, without ROS.

The synchronizer callback only `put`s the newest frame into a one-slot `LatestFrameMailbox`; a frame
still waiting there is replaced and counted as dropped ("replaced_by_newer"). A `FrameWorker` thread
`take`s the newest frame, processes it and comes back for the next: the callback never waits for
inference and stale frames never pile up. Every frame that is not published is counted once, by reason,
in a `DropCounter`.
"""
from __future__ import annotations

import threading
from typing import Any, Callable

# Drop reasons, as the node reports them.
REPLACED_BY_NEWER = "replaced_by_newer"
CONVERSION_ERROR = "conversion_error"
SIZE_MISMATCH = "size_mismatch"
NO_TRANSFORM = "no_transform"
BAD_DISTORTION = "bad_distortion"  # CameraInfo's lens distortion unusable: unknown model, d of the wrong length
INFERENCE_ERROR = "inference_error"
DROP_REASONS = (REPLACED_BY_NEWER, CONVERSION_ERROR, SIZE_MISMATCH, NO_TRANSFORM, BAD_DISTORTION, INFERENCE_ERROR)


class FrameDropped(Exception):
    """Raised by a frame handler to drop the frame for `reason` (one of DROP_REASONS) with a message."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


class DropCounter:
    """Thread-safe counts of dropped frames by reason."""

    def __init__(self, reasons: tuple[str, ...] = DROP_REASONS):
        self._lock = threading.Lock()
        self._counts = {reason: 0 for reason in reasons}

    def add(self, reason: str, count: int = 1) -> None:
        """Count `count` drops for `reason` (reasons outside the initial set are added on first use)."""
        with self._lock:
            self._counts[reason] = self._counts.get(reason, 0) + count

    def snapshot(self) -> dict[str, int]:
        """A copy of the counts, every known reason included (0 when none)."""
        with self._lock:
            return dict(self._counts)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self._counts.values())


class LatestFrameMailbox:
    """A one-slot, thread-safe mailbox: `put` replaces what is waiting, `take` waits for something."""

    def __init__(self, drops: DropCounter | None = None):
        self.drops = drops if drops is not None else DropCounter()
        self._condition = threading.Condition()
        self._item: Any = None
        self._has_item = False
        self._closed = False
        self.received = 0

    def put(self, item: Any) -> bool:
        """Store `item` as the newest frame. Returns True when it replaced a frame nobody had taken
        (that frame is counted as dropped, "replaced_by_newer"). Items put after `close` are ignored."""
        with self._condition:
            if self._closed:
                return False
            replaced = self._has_item
            self._item, self._has_item = item, True
            self.received += 1
            self._condition.notify()
        if replaced:
            self.drops.add(REPLACED_BY_NEWER)
        return replaced

    def take(self, timeout: float | None = None) -> tuple[bool, Any]:
        """Wait up to `timeout` seconds (None: forever) for a frame: (True, frame), or (False, None) on
        timeout or once the mailbox is closed and empty."""
        with self._condition:
            self._condition.wait_for(lambda: self._has_item or self._closed, timeout)
            if not self._has_item:
                return False, None
            item, self._item, self._has_item = self._item, None, False
            return True, item

    def close(self) -> None:
        """Wake every waiting `take`; later `put`s are ignored. A frame still waiting can still be taken."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()

    @property
    def closed(self) -> bool:
        with self._condition:
            return self._closed


class FrameWorker:
    """A thread that processes the newest frame of a mailbox until `stop`.

    handler(frame) does the work (and publishing). A `FrameDropped` it raises counts a drop for its
    reason; any other exception counts as `error_reason`. Either way `on_error(reason, error)` is called
    (for logging) and the worker goes on with the next frame. `on_start()` runs first in the thread
    (warm-up), so that slow start-up work never runs on the caller's thread.
    """

    def __init__(self, mailbox: LatestFrameMailbox, handler: Callable[[Any], None],
                 on_error: Callable[[str, BaseException], None] | None = None,
                 error_reason: str = INFERENCE_ERROR, on_start: Callable[[], None] | None = None,
                 poll_interval: float = 0.1, name: str = "depth_completion_worker"):
        self.mailbox = mailbox
        self.handler = handler
        self.on_error = on_error
        self.error_reason = error_reason
        self.on_start = on_start
        self.poll_interval = float(poll_interval)
        self.processed = 0
        self._stop = threading.Event()
        self._busy = threading.Event()
        # Not a daemon: shutdown stops and joins it, so no frame is cut off half-published.
        self._thread = threading.Thread(target=self._run, name=name, daemon=False)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> bool:
        """Ask the thread to finish (after the frame in hand), wait up to `timeout` s; True when it ended."""
        self._stop.set()
        self.mailbox.close()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def busy(self) -> bool:
        """True while the handler works on a frame."""
        return self._busy.is_set()

    def _report(self, reason: str, error: BaseException) -> None:
        self.mailbox.drops.add(reason)
        if self.on_error is not None:
            try:
                self.on_error(reason, error)
            except Exception:  # noqa: BLE001 - a failing logger must not end the worker
                pass

    def _run(self) -> None:
        if self.on_start is not None and not self._stop.is_set():
            try:
                self.on_start()
            except Exception as error:  # noqa: BLE001 - e.g. warm-up failed: frames may still work
                if self.on_error is not None:
                    self.on_error("start", error)
        while not self._stop.is_set():
            has_frame, frame = self.mailbox.take(timeout=self.poll_interval)
            if not has_frame or self._stop.is_set():
                continue
            self._busy.set()
            try:
                self.handler(frame)
                self.processed += 1
            except FrameDropped as dropped:
                self._report(dropped.reason, dropped)
            except Exception as error:  # noqa: BLE001 - bad frames and failed inference never end the node
                self._report(self.error_reason, error)
            finally:
                self._busy.clear()
