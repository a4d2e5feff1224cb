"""Rates, latency windows, log throttling, the self-check window and the diagnostics summaries of the node,
without ROS.

All timing here uses a monotonic wall clock (injectable for tests): rates and throttles describe the
machine, not the (possibly simulated) ROS time, as diagnostic_updater's own helpers do.
"""
from __future__ import annotations

import collections
import math
import threading
import time
from dataclasses import dataclass
from typing import Callable, Mapping

import numpy as np

Clock = Callable[[], float]

# Diagnostic levels (diagnostic_msgs/DiagnosticStatus OK, WARN, ERROR) without importing the message.
LEVEL_OK, LEVEL_WARN, LEVEL_ERROR = 0, 1, 2


class RateMeter:
    """Events per second over a sliding window of `window_s` seconds."""

    def __init__(self, window_s: float = 5.0, clock: Clock = time.monotonic):
        if window_s <= 0:
            raise ValueError(f"window_s must be > 0, got {window_s}")
        self.window_s = float(window_s)
        self._clock = clock
        self._times: collections.deque[float] = collections.deque()
        self._lock = threading.Lock()
        self._started = clock()

    def tick(self) -> None:
        """Record one event now."""
        now = self._clock()
        with self._lock:
            self._times.append(now)
            self._forget(now)

    def _forget(self, now: float) -> None:
        while self._times and self._times[0] <= now - self.window_s:
            self._times.popleft()

    def rate(self) -> float:
        """Events per second in the last window (a shorter span right after start)."""
        now = self._clock()
        with self._lock:
            self._forget(now)
            span = min(self.window_s, now - self._started)
            return len(self._times) / span if span > 0 else 0.0


class LatencyWindow:
    """The last `size` samples (e.g. milliseconds) with their mean and 90th percentile."""

    def __init__(self, size: int = 100):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self._samples: collections.deque[float] = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, value: float) -> None:
        with self._lock:
            self._samples.append(float(value))

    def summary(self) -> tuple[float, float, int]:
        """(mean, p90, count) of the window; (nan, nan, 0) when empty."""
        with self._lock:
            samples = np.fromiter(self._samples, dtype=np.float64)
        if samples.size == 0:
            return float("nan"), float("nan"), 0
        return float(samples.mean()), float(np.percentile(samples, 90)), int(samples.size)


class LogThrottle:
    """Allows one message per key every `period_s` seconds and counts what it held back, so that a
    flood of bad frames logs once per period per reason instead of once per frame."""

    def __init__(self, period_s: float = 5.0, clock: Clock = time.monotonic):
        self.period_s = float(period_s)
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = collections.defaultdict(int)
        self._lock = threading.Lock()

    def allow(self, key: str) -> tuple[bool, int]:
        """(whether to log now, how many messages for `key` were held back since the last one logged)."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self.period_s:
                self._suppressed[key] += 1
                return False, 0
            self._last[key] = now
            return True, self._suppressed.pop(key, 0)


INPUTS = ("image", "camera_info", "points")


class InputAccounting:
    """Where every input message went, per input, so that transport, synchronizer and processing losses can
    be told apart: `received` (reached its subscription), `lost_in_transport` (the middleware reported it
    lost; Cyclone DDS does not report best-effort samples lost to missing fragments), `missing_by_stamp_gaps`
    (an estimate that needs no middleware support: a sensor publishes at a steady rate, so a gap of k
    periods between consecutive header stamps means k - 1 messages never arrived), `paired` (went into a
    synchronized frame), `waiting` (in the synchronizer's queue now) and `unpaired` (the rest: no partner
    within the slop, or pushed out of the synchronizer's queue by newer messages).

    The exact count of messages that never reached this process is the publisher's count minus `received`.
    """

    GAP_FACTOR = 1.5  # a gap counts once it exceeds 1.5 periods (jitter stays below)
    PAUSE_PERIODS = 20  # a longer gap is a paused or restarted stream, not loss
    PERIOD_SAMPLES = 32
    MIN_PERIOD_SAMPLES = 8

    def __init__(self, inputs: tuple[str, ...] = INPUTS):
        self.inputs = tuple(inputs)
        self._lock = threading.Lock()
        self._received = dict.fromkeys(self.inputs, 0)
        self._lost = dict.fromkeys(self.inputs, 0)
        self._missing = dict.fromkeys(self.inputs, 0)
        self._last_stamp: dict[str, int | None] = dict.fromkeys(self.inputs)
        self._intervals = {name: collections.deque(maxlen=self.PERIOD_SAMPLES) for name in self.inputs}
        self._paired = 0

    def receive(self, name: str, stamp_ns: int | None = None) -> None:
        """Count a message of input `name`; its header stamp feeds the gap estimate."""
        with self._lock:
            self._received[name] += 1
            if stamp_ns is None:
                return
            last, self._last_stamp[name] = self._last_stamp[name], stamp_ns
            if last is None or stamp_ns <= last:  # first, repeated or backwards (a bag looping): no gap
                return
            interval = stamp_ns - last
            intervals = self._intervals[name]
            if len(intervals) >= self.MIN_PERIOD_SAMPLES:
                # The 10th percentile, not the median: under heavy loss most intervals span several periods.
                period = float(np.percentile(intervals, 10))
                if interval > self.PAUSE_PERIODS * period:
                    return
                if interval > self.GAP_FACTOR * period:
                    self._missing[name] += int(round(interval / period)) - 1
                    return  # a gap is no sample of the period
            intervals.append(interval)

    def lose(self, name: str, count: int) -> None:
        with self._lock:
            self._lost[name] += int(count)

    def pair(self) -> None:
        """One synchronized frame: one message of every input."""
        with self._lock:
            self._paired += 1

    @property
    def paired(self) -> int:
        with self._lock:
            return self._paired

    def snapshot(self, waiting: Mapping[str, int] | None = None) -> dict[str, dict[str, int]]:
        """{input: {received, lost_in_transport, missing_by_stamp_gaps, paired, waiting, unpaired}}."""
        waiting = waiting or {}
        with self._lock:
            rows = {}
            for name in self.inputs:
                queued = int(waiting.get(name, 0))
                rows[name] = {"received": self._received[name], "lost_in_transport": self._lost[name],
                              "missing_by_stamp_gaps": self._missing[name], "paired": self._paired,
                              "waiting": queued,
                              "unpaired": max(0, self._received[name] - self._paired - queued)}
            return rows


def describe_roi(mode: str, rows: tuple[int, int, int] | None) -> str:
    """The region of interest for /diagnostics: the mode and the newest frame's rows, e.g.
    "auto: rows 135-375 (240 of 375)"; the mode alone before the first frame."""
    if rows is None:
        return mode
    first, end, height = rows
    return f"{mode}: rows {first}-{end} ({end - first} of {height})"


@dataclass(frozen=True)
class DiagnosticSummary:
    """What the node's diagnostic task reports: a level, a one-line message and key/value strings."""

    level: int
    message: str
    values: dict[str, str]


def summarize(input_rate: float, output_rate: float, pipeline_ms: tuple[float, float, int],
              age_ms: tuple[float, float, int], drops_total: Mapping[str, int],
              drops_recent: Mapping[str, int], backend: str = "",
              accounting: Mapping[str, Mapping[str, int]] | None = None, published: int | None = None,
              lost_recent: int = 0, backend_reason: str = "", roi: str = "") -> DiagnosticSummary:
    """The diagnostic status of the node.

    ERROR: synchronized frames arrive but none is published (every frame dropped or failing).
    WARN: no synchronized input (nothing to do: check topics, QoS and stamps), some frames were
    dropped for bad input, a missing transform or a failed inference since the previous report
    (`drops_recent`; `drops_total` counts since start and only fills the values), or the middleware
    reported input messages lost, or their stamps show messages missing, since then (`lost_recent`: see the
    README's DDS tuning).
    OK: publishing. Frames replaced by newer ones are normal under load and do not raise the level.
    `accounting` (InputAccounting.snapshot) and `published` add the per-input and per-frame counts;
    `backend_reason` (why the engine's backend runs) and `roi` (`describe_roi`) add a value each when given.
    """
    values = {
        "input rate (Hz)": f"{input_rate:.2f}",
        "output rate (Hz)": f"{output_rate:.2f}",
        "pipeline latency mean (ms)": f"{pipeline_ms[0]:.1f}",
        "pipeline latency p90 (ms)": f"{pipeline_ms[1]:.1f}",
        "stamp to publish age mean (ms)": f"{age_ms[0]:.1f}",
        "stamp to publish age p90 (ms)": f"{age_ms[1]:.1f}",
        "latency samples": str(pipeline_ms[2]),
    }
    values.update({f"dropped: {reason}": str(count) for reason, count in drops_total.items()})
    for name, counts in (accounting or {}).items():
        values.update({f"{name}: {stage}": str(count) for stage, count in counts.items()})
    if accounting:
        values["frames synchronized"] = str(next(iter(accounting.values()))["paired"])
    if published is not None:
        values["frames published"] = str(published)
    if backend:
        values["engine"] = backend
    if backend_reason:
        values["backend choice"] = backend_reason
    if roi:
        values["roi"] = roi
    failures = {reason: count for reason, count in drops_recent.items() if reason != "replaced_by_newer" and count}
    if input_rate > 0 and output_rate == 0:
        return DiagnosticSummary(LEVEL_ERROR, "receiving frames but publishing none", values)
    if input_rate == 0:
        return DiagnosticSummary(LEVEL_WARN, "no synchronized input", values)
    if lost_recent:
        return DiagnosticSummary(LEVEL_WARN, f"publishing at {output_rate:.1f} Hz; {lost_recent} input message(s) lost "
                                             "in transport lately (socket receive buffer too small?)", values)
    if failures:
        worst = max(failures, key=failures.get)
        return DiagnosticSummary(LEVEL_WARN, f"publishing at {output_rate:.1f} Hz; dropped "
                                             f"{sum(failures.values())} frame(s) lately (most: {worst})", values)
    return DiagnosticSummary(LEVEL_OK, f"publishing at {output_rate:.1f} Hz", values)


# ------------------------------------------------------------------------------------------ self-check
MIN_SELF_CHECK_SAMPLES = 30  # fewer held-out pixels in the window: too noisy to raise the level


class SelfCheckWindow:
    """The last `size` self-check frames (`self_check.SelfCheck`), pooled: RMSE and MAE over all their
    held-out pixels together (not a mean of per-frame figures), overall and per distance band."""

    def __init__(self, size: int = 10):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self._frames: collections.deque = collections.deque(maxlen=size)
        self._lock = threading.Lock()

    def add(self, check) -> None:
        """Add one frame's SelfCheck (an empty one counts as a frame without samples)."""
        bands = tuple((band.label, band.count, _squares(band.rmse_mm, band.count), (band.mae_mm or 0.0) * band.count)
                      for band in check.bands)
        entry = (check.scored, _squares(check.rmse_mm, check.scored), (check.mae_mm or 0.0) * check.scored,
                 bands, check.edge_agreement)
        with self._lock:
            self._frames.append(entry)

    def summary(self) -> dict:
        """{frames, samples, rmse_mm, mae_mm (None without samples), bands: {label: (samples, rmse_mm, mae_mm)},
        edge_agreement (mean over the frames that have one, else None)}."""
        with self._lock:
            frames = list(self._frames)
        samples = sum(frame[0] for frame in frames)
        bands: dict[str, list[float]] = {}
        for frame in frames:
            for label, count, squares, absolute in frame[3]:
                pooled = bands.setdefault(label, [0, 0.0, 0.0])
                pooled[0] += count
                pooled[1] += squares
                pooled[2] += absolute
        agreements = [frame[4] for frame in frames if frame[4] is not None]
        return {
            "frames": len(frames), "samples": samples,
            "rmse_mm": math.sqrt(sum(f[1] for f in frames) / samples) if samples else None,
            "mae_mm": sum(f[2] for f in frames) / samples if samples else None,
            "bands": {label: (int(n), math.sqrt(sq / n) if n else None, ab / n if n else None)
                      for label, (n, sq, ab) in bands.items()},
            "edge_agreement": float(np.mean(agreements)) if agreements else None,
        }


def _squares(rmse_mm: float | None, count: int) -> float:
    return (rmse_mm or 0.0) ** 2 * count


def summarize_self_check(window: Mapping, warn_rmse_mm: float, error_rmse_mm: float, fraction: float,
                         every_n_frames: int, warn_edge_agreement: float = 0.0) -> DiagnosticSummary:
    """The diagnostic status of the LiDAR hold-out self-check from a `SelfCheckWindow.summary()`.

    ERROR: the pooled self-check RMSE is at or above `error_rmse_mm`; WARN: at or above `warn_rmse_mm`, or
    the mean edge agreement is below `warn_edge_agreement` (when > 0: a hint at the LiDAR->camera
    calibration, which the hold-out cannot see); OK otherwise, and also while it is off (fraction 0), has no
    sample yet, or has fewer than MIN_SELF_CHECK_SAMPLES held-out pixels in its window (too few to judge).
    """
    def mm(value):
        return "n/a" if value is None else f"{value:.1f}"

    values = {
        "self-check RMSE (mm)": mm(window.get("rmse_mm")),
        "self-check MAE (mm)": mm(window.get("mae_mm")),
        "self-check samples": str(window.get("samples", 0)),
        "self-check frames": str(window.get("frames", 0)),
    }
    for label, (count, rmse, mae) in window.get("bands", {}).items():
        values[f"self-check RMSE {label} (mm)"] = mm(rmse)
        values[f"self-check MAE {label} (mm)"] = mm(mae)
        values[f"self-check samples {label}"] = str(count)
    agreement = window.get("edge_agreement")
    values["self-check edge agreement"] = "n/a" if agreement is None else f"{agreement:.3f}"
    values.update({"self-check fraction": f"{fraction:g}", "self-check every n frames": str(every_n_frames),
                   "self-check warn RMSE (mm)": f"{warn_rmse_mm:g}",
                   "self-check error RMSE (mm)": f"{error_rmse_mm:g}",
                   "self-check warn edge agreement": f"{warn_edge_agreement:g}"})
    if fraction <= 0:
        return DiagnosticSummary(LEVEL_OK, "self-check off (self_check.fraction 0)", values)
    rmse, samples = window.get("rmse_mm"), window.get("samples", 0)
    if rmse is None:
        return DiagnosticSummary(LEVEL_OK, "no self-check sample yet", values)
    message = (f"self-check RMSE {rmse:.0f} mm over {samples} held-out LiDAR pixels "
               f"({window.get('frames', 0)} frames)")
    if samples < MIN_SELF_CHECK_SAMPLES:
        return DiagnosticSummary(LEVEL_OK, f"{message}; too few samples to judge", values)
    if rmse >= error_rmse_mm:
        return DiagnosticSummary(LEVEL_ERROR, f"{message} >= error threshold {error_rmse_mm:g} mm", values)
    if rmse >= warn_rmse_mm:
        return DiagnosticSummary(LEVEL_WARN, f"{message} >= warn threshold {warn_rmse_mm:g} mm", values)
    if warn_edge_agreement > 0 and agreement is not None and agreement < warn_edge_agreement:
        return DiagnosticSummary(LEVEL_WARN, f"{message}; image/LiDAR edge agreement {agreement:.2f} below "
                                             f"{warn_edge_agreement:g}: check the LiDAR->camera calibration", values)
    return DiagnosticSummary(LEVEL_OK, message, values)
