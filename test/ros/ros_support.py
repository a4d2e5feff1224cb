"""Helpers of the live ROS 2 tests: processes started as a user starts them, and an in-process peer node
that plays the sensors and records what the node publishes."""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Callable


class RosProcess:
    """A command (`ros2 launch ...`, `ros2 bag ...`) in its own process group, its output in a file.

    `interrupt()` sends SIGINT to the whole group, as Ctrl-C in a terminal does: the launch process and the
    nodes it started each get it.
    """

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        self.args = args
        self.log_path = Path(log_path)
        self._log = open(self.log_path, "w")
        self.popen = subprocess.Popen(args, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                      stdin=subprocess.DEVNULL, start_new_session=True)

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_for_output(self, text: str, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if text in self.output():
                return True
            if self.popen.poll() is not None:
                return text in self.output()
            time.sleep(0.1)
        return False

    def interrupt(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGINT)

    def wait(self, timeout_s: float) -> int | None:
        try:
            return self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, timeout_s: float = 30.0) -> int:
        """SIGINT, then SIGKILL of the group after `timeout_s`; returns the exit code."""
        self.interrupt()
        code = self.wait(timeout_s)
        if code is None:
            os.killpg(self.popen.pid, signal.SIGKILL)
            code = self.popen.wait()
        self._log.close()
        return code


def wait_until(condition: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
    """Poll `condition` until it holds or `timeout_s` passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll_s)
    return bool(condition())


class Recorder:
    """A thread-safe list of the messages a subscription received."""

    def __init__(self):
        self._lock = threading.Lock()
        self._messages: list = []

    def __call__(self, message) -> None:
        with self._lock:
            self._messages.append(message)

    @property
    def messages(self) -> list:
        with self._lock:
            return list(self._messages)

    def __len__(self) -> int:
        with self._lock:
            return len(self._messages)


class SpinningNode:
    """An rclpy node spun by its own executor thread, so that the test's main thread may wait and assert."""

    def __init__(self, name: str, context=None):
        import rclpy
        from rclpy.executors import MultiThreadedExecutor

        self.node = rclpy.create_node(name, context=context)
        self.executor = MultiThreadedExecutor(num_threads=2, context=context)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self._spin, daemon=True)
        self._thread.start()

    def _spin(self) -> None:
        from rclpy.executors import ExternalShutdownException

        try:
            self.executor.spin()
        except (ExternalShutdownException, RuntimeError):
            pass

    def record(self, msg_type, topic: str, qos) -> Recorder:
        recorder = Recorder()
        self.node.create_subscription(msg_type, topic, recorder, qos)
        return recorder

    def close(self) -> None:
        self.executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()
        self._thread.join(timeout=5.0)


class StampedRecorder:
    """A thread-safe list of (monotonic ns, wall-clock ns, message) per message a subscription received (raw
    subscriptions hand over the CDR bytes as the message)."""

    def __init__(self):
        self._lock = threading.Lock()
        self._entries: list[tuple[int, int, object]] = []

    def __call__(self, message) -> None:
        entry = (time.monotonic_ns(), time.time_ns(), message)
        with self._lock:
            self._entries.append(entry)

    @property
    def entries(self) -> list[tuple[int, int, object]]:
        with self._lock:
            return list(self._entries)

    @property
    def messages(self) -> list:
        return [message for _, _, message in self.entries]

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def record_stamped(spinning: SpinningNode, msg_type, topic: str, qos, raw: bool = False) -> StampedRecorder:
    """Subscribe `spinning`'s node to `topic`; the messages (CDR bytes where `raw`) with their arrival times."""
    recorder = StampedRecorder()
    spinning.node.create_subscription(msg_type, topic, recorder, qos, raw=raw)
    return recorder


def write_recording(path: Path, recordings: dict, distro: str = "jazzy") -> dict[str, int]:
    """A rosbag2 at `path` of raw recordings, {topic: (ROS type name, StampedRecorder of a raw subscription)},
    each message logged at its wall-clock arrival time, as `ros2 bag record` logs it. Returns the counts."""
    from depth_completion_ros.data.rosbag import open_bag_writer

    with open_bag_writer(path, distro=distro) as bag:
        for topic, (msgtype, _) in recordings.items():
            bag.add_topic(topic, msgtype)
        entries = sorted((wall_ns, topic, msgtype, raw) for topic, (msgtype, recorder) in recordings.items()
                         for _, wall_ns, raw in recorder.entries)
        for wall_ns, topic, msgtype, raw in entries:
            bag.write(topic, wall_ns, bag.typestore.deserialize_cdr(raw, msgtype))
        return dict(bag.counts)


def assert_recorded_scores_like_offline(source: Path, recorded: Path, model: str, frames: int, out: Path) -> None:
    """`dcros eval-bag SOURCE --recorded-depth RECORDED` (what the live node published) against `dcros eval-bag
    SOURCE` with `model` offline: every frame scored, RMSE and MAE within 1 %."""
    import json

    import pytest

    from depth_completion_ros.cli import main as dcros

    assert dcros(["eval-bag", str(source), "--recorded-depth", str(recorded), "--panels", "0",
                  "--out", str(out / "live")]) == 0
    assert dcros(["eval-bag", str(source), "--model", model, "--device", "cpu", "--panels", "0",
                  "--out", str(out / "offline")]) == 0
    live = json.loads((out / "live" / "metrics.json").read_text())
    offline = json.loads((out / "offline" / "metrics.json").read_text())
    assert live["frames_scored"] == offline["frames_scored"] == frames, (live, offline)
    assert live["frames_missing_prediction"] == 0
    assert live["rmse_mm"] == pytest.approx(offline["rmse_mm"], rel=0.01)
    assert live["mae_mm"] == pytest.approx(offline["mae_mm"], rel=0.01)
