"""The running node under real ROS 2: input accounting, fuzz, soak and overload.

    python benchmarks/node_robustness.py accounting --frames 100 --json benchmarks/results/node_accounting.json
    python benchmarks/node_robustness.py fuzz --inputs 10000 --json benchmarks/results/node_fuzz.json
    python benchmarks/node_robustness.py soak --frames 3000 --json benchmarks/results/node_soak.json
    python benchmarks/node_robustness.py overload --frames 300 --json benchmarks/results/node_overload.json

Needs ROS 2: a sourced distribution or the Python package registry's (`pip install .[ros]`, then `dcros ros-setup`
for tf2_msgs), and CYCLONEDDS_URI as for deployment where Cyclone DDS runs. DDS stays on this machine's loopback
(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST and a random ROS_DOMAIN_ID unless set). The node runs in its own process
(`depth_completion_node --ros-args ...`, as a user starts it), fed by a driver node in this process over DDS, as a
sensor driver would feed it; everything is read from the node's /diagnostics and its process (/proc), nothing
from inside it. test/ros/test_robustness.py runs a reduced version of each scenario.

- accounting: KITTI-size frames (synthetic drive, shipped default model, CPU) at 10 Hz, best effort. Per
  input: sent by the driver, received / lost in transport / paired / unpaired by the node, frames replaced,
  published; once with the given DDS configuration and once with an untuned Cyclone DDS (no socket buffer
  setting), so that transport loss shows beside the other counts.
- fuzz: malformed triples of every `ros.malformed` kind (a small wall scene, nearest fill, extrinsic only in
  /tf_static), a valid frame after every `--valid-every` of them: the node must stay up, count every bad
  frame under its kind's reason, and answer every valid frame with the wall's exact depth.
- soak: frames at 10 Hz for a long run: resident memory after warm-up, threads and open files.
- overload: frames at 3x the node's measured throughput: output age p99 against the single-frame latency,
  queues bounded, the excess counted as replaced.
"""
from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    baseline_checkout, describe_machine, proc_status, remove_baseline_checkout, write_json,
)

STATUS_NAME = "depth completion"  # diagnostic_updater names it "<node>: depth completion"
TOPICS = {"image": "/robustness/camera/image", "camera_info": "/robustness/camera/camera_info",
          "points": "/robustness/lidar/points"}
UNTUNED_CYCLONE = ('<CycloneDDS><Domain Id="any"><General><Interfaces><NetworkInterface name="lo"/></Interfaces>'
                   '<AllowMulticast>false</AllowMulticast></General><Discovery><ParticipantIndex>auto'
                   '</ParticipantIndex><MaxAutoParticipantIndex>50</MaxAutoParticipantIndex><Peers>'
                   '<Peer address="localhost"/></Peers></Discovery></Domain></CycloneDDS>')
SECOND = 1_000_000_000


# ------------------------------------------------------------------------------------------------ node
class NodeProcess:
    """The node in its own process with a parameter file; its resource use read from /proc."""

    def __init__(self, parameters: dict, log_path: Path, env: dict | None = None, preload: tuple[str, ...] = ()):
        """`preload`: modules the process imports before the node (e.g. ("torch",): the old path's memory)."""
        self.log_path = Path(log_path)
        params_file = self.log_path.with_suffix(".params.yaml")
        params_file.write_text(yaml.safe_dump({"depth_completion": {"ros__parameters": parameters}}))
        remaps = [arg for name, topic in TOPICS.items() for arg in ("-r", f"{name}:={topic}")]
        self._log = open(self.log_path, "w")
        # The console script as a pip user runs it (`python -m` where it is not installed beside this Python).
        script = Path(sys.executable).parent / "depth_completion_node"
        command = [str(script)] if script.exists() else [sys.executable, "-m", "depth_completion_ros.ros.node"]
        if preload:
            command = [sys.executable, "-c", f"import sys, {', '.join(preload)}; "
                       "from depth_completion_ros.ros.node import main; sys.exit(main())"]
        self.popen = subprocess.Popen(
            [*command, "--ros-args", "--params-file", str(params_file), *remaps], stdout=self._log,
            stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})})

    def output(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def wait_ready(self, timeout_s: float = 180.0) -> None:
        deadline = time.monotonic() + timeout_s
        while "ready for frames" not in self.output():
            if not self.alive or time.monotonic() > deadline:
                raise RuntimeError(f"the node did not get ready:\n{self.output()[-3000:]}")
            time.sleep(0.1)

    def resources(self) -> dict:
        """Resident memory (KiB) now and at its peak so far (VmHWM), threads and open files of the node's process."""
        status = proc_status(self.popen.pid)
        return {"rss_kib": status["VmRSS"], "rss_peak_kib": status["VmHWM"], "threads": status["Threads"],
                "open_files": len(os.listdir(f"/proc/{self.popen.pid}/fd"))}

    def stop(self, timeout_s: float = 30.0) -> int:
        if self.alive:
            self.popen.send_signal(signal.SIGINT)
        try:
            code = self.popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            code = self.popen.wait()
        self._log.close()
        return code


# ---------------------------------------------------------------------------------------------- driver
@dataclass
class Answer:
    stamp_ns: int
    received_ns: int  # wall clock at reception
    msg: object = field(repr=False)


class Driver:
    """The sensors (best-effort publishers, /tf_static) and the listener of depth/image and /diagnostics."""

    def __init__(self):
        import rclpy
        from diagnostic_msgs.msg import DiagnosticArray
        from rclpy.executors import MultiThreadedExecutor
        from rclpy.qos import QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
        from sensor_msgs.msg import CameraInfo, Image, PointCloud2

        from depth_completion_ros.ros.synthetic import rclpy_tf_types

        if not rclpy.ok():
            rclpy.init()
        self.types = rclpy_tf_types()
        self.node = rclpy.create_node("depth_completion_robustness_driver")
        self.publishers = {
            "image": self.node.create_publisher(Image, TOPICS["image"], qos_profile_sensor_data),
            "camera_info": self.node.create_publisher(CameraInfo, TOPICS["camera_info"], qos_profile_sensor_data),
            "points": self.node.create_publisher(PointCloud2, TOPICS["points"], qos_profile_sensor_data),
        }
        self.sent = Counter()
        self._lock = threading.Lock()
        self.answers: list[Answer] = []
        self._diagnostics: dict[str, str] = {}
        self._diagnostics_count = 0
        reliable = QoSProfile(depth=50, reliability=ReliabilityPolicy.RELIABLE)
        self.node.create_subscription(Image, "/depth/image", self._on_depth, reliable)
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on_diagnostics, reliable)
        self._static_broadcasters = []
        self.executor = MultiThreadedExecutor(num_threads=2)
        self.executor.add_node(self.node)
        self._thread = threading.Thread(target=self.executor.spin, daemon=True)
        self._thread.start()

    def _on_depth(self, msg) -> None:
        from depth_completion_ros.data import messages

        with self._lock:
            self.answers.append(Answer(messages.stamp_to_ns(msg.header.stamp), time.time_ns(), msg))

    def _on_diagnostics(self, msg) -> None:
        for status in msg.status:
            if status.name.split(": ", 1)[-1] == STATUS_NAME:  # not the "... self-check" status
                with self._lock:
                    self._diagnostics = {item.key: item.value for item in status.values}
                    self._diagnostics["__level"] = str(int.from_bytes(bytes(status.level), "little")
                                                       if isinstance(status.level, bytes) else status.level)
                    self._diagnostics["__message"] = status.message
                    self._diagnostics_count += 1

    def diagnostics(self, fresh_after: int | None = None, timeout_s: float = 5.0) -> dict[str, str]:
        """The node's latest diagnostic values; with fresh_after, wait for a report newer than that count."""
        deadline = time.monotonic() + timeout_s
        while fresh_after is not None and self._diagnostics_count <= fresh_after and time.monotonic() < deadline:
            time.sleep(0.05)
        with self._lock:
            return dict(self._diagnostics)

    @property
    def diagnostics_count(self) -> int:
        return self._diagnostics_count

    def settled_diagnostics(self) -> dict[str, str]:
        """Values from a report made after everything sent so far was handled (two reports later)."""
        count = self.diagnostics_count
        self.diagnostics(fresh_after=count + 1, timeout_s=5.0)
        return self.diagnostics()

    def wait_all_handled(self, timeout_s: float) -> dict[str, str]:
        """Settled values once every synchronized frame is published or dropped (none still in hand)."""
        deadline = time.monotonic() + timeout_s
        while True:
            values = self.settled_diagnostics()
            synchronized = int(values.get("frames synchronized", -1))
            handled = int(values.get("frames published", 0)) + sum(_ints(values, "dropped: ").values())
            if synchronized == handled or time.monotonic() > deadline:
                return values

    def answer_for(self, stamp_ns: int) -> Answer | None:
        with self._lock:
            for answer in reversed(self.answers):
                if answer.stamp_ns == stamp_ns:
                    return answer
        return None

    def wait_answer(self, stamp_ns: int, timeout_s: float) -> Answer | None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            answer = self.answer_for(stamp_ns)
            if answer is not None:
                return answer
            time.sleep(0.002)
        return None

    def matched(self) -> bool:
        return all(publisher.get_subscription_count() > 0 for publisher in self.publishers.values())

    def wait_matched(self, timeout_s: float = 60.0) -> None:
        deadline = time.monotonic() + timeout_s
        while not self.matched():
            if time.monotonic() > deadline:
                raise RuntimeError("the node's subscriptions never matched the driver's publishers")
            time.sleep(0.05)

    def broadcast_static(self, transforms: list) -> None:
        """Latch `transforms` on /tf_static (as tf2_ros' StaticTransformBroadcaster; tf2_ros is not needed)."""
        from depth_completion_ros.ros.synthetic import publish_static_transforms

        self._static_broadcasters.append(publish_static_transforms(self.node, transforms))

    def send(self, image, camera_info, cloud) -> None:
        self.publishers["camera_info"].publish(camera_info)
        self.publishers["points"].publish(cloud)
        self.publishers["image"].publish(image)
        self.sent.update(("image", "camera_info", "points"))

    def close(self) -> None:
        import rclpy

        self.executor.shutdown(timeout_sec=5.0)
        self.node.destroy_node()
        rclpy.try_shutdown()


def restamp(messages_, stamp_ns: int) -> None:
    """Give every message of a frame the stamp `stamp_ns` (their headers are distinct objects)."""
    for msg in messages_:
        msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(int(stamp_ns), SECOND)


def stream(driver: Driver, base: list, frames: int, rate_hz: float, after_send=None) -> None:
    """Send `frames` frames cycling through `base` at `rate_hz`, stamped on a steady clock from now;
    `after_send(index)` runs after each send."""
    period = 1.0 / rate_hz
    start = time.monotonic()
    first_stamp = time.time_ns()
    for index in range(frames):
        frame = base[index % len(base)]
        restamp((frame.image, frame.camera_info, frame.cloud), first_stamp + index * int(period * SECOND))
        driver.send(frame.image, frame.camera_info, frame.cloud)
        if after_send is not None:
            after_send(index)
        time.sleep(max(0.0, start + (index + 1) * period - time.monotonic()))


def _ints(values: dict, prefix: str) -> dict[str, int]:
    return {key[len(prefix):]: int(value) for key, value in values.items() if key.startswith(prefix)}


def input_counts(values: dict) -> dict[str, dict[str, int]]:
    """{input: {received, lost_in_transport, missing_by_stamp_gaps, paired, waiting, unpaired}}."""
    stages = ("received", "lost_in_transport", "missing_by_stamp_gaps", "paired", "waiting", "unpaired")
    return {name: {stage: int(values.get(f"{name}: {stage}", -1)) for stage in stages} for name in TOPICS}


def _drive_frames(work_dir: Path, frames: int, crop: tuple[int, int] | None):
    from depth_completion_ros.data.kitti import KittiRawDrive
    from depth_completion_ros.data.synth import generate_dataset
    from depth_completion_ros.data.synth.writer import drive_name
    from depth_completion_ros.ros.synthetic import drive_frames, drive_static_transforms, rclpy_tf_types

    root = work_dir / "synthetic_drive"
    if not (root / "synth_manifest.json").exists():
        generate_dataset(root, drives=1, frames=frames, seed=11, val_drives=0, progress=False)
    types = rclpy_tf_types()
    drive = drive_name(1)
    rig = KittiRawDrive(root / "kitti_raw", drive).calibration.lidar_to_camera
    return drive_frames(root, drive, types, crop=crop), drive_static_transforms(root, drive, types), rig


def _node_parameters(**changes) -> dict:
    values = {"model": "default", "device": "cpu", "precision": "fp32", "warmup": True, "use_tf": True,
              "tf_wait": 5.0}
    values.update(changes)
    return values


# ------------------------------------------------------------------------------------------- scenarios
def run_accounting(frames: int = 100, rate_hz: float = 10.0, configurations=("given", "untuned"),
                   work_dir: Path | None = None, model: str = "default") -> dict:
    """KITTI-size frames at `rate_hz`: what the driver sent and where the node says each input went."""
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="dcros_accounting_"))
    base, static, _ = _drive_frames(work_dir, 4, crop=None)
    results = {}
    for configuration in configurations:
        env = {}
        if configuration == "untuned":
            env["CYCLONEDDS_URI"] = UNTUNED_CYCLONE
        driver = Driver()
        node = NodeProcess(_node_parameters(model=model), work_dir / f"node_{configuration}.log", env=env)
        try:
            driver.broadcast_static(static)
            node.wait_ready()
            driver.wait_matched()
            time.sleep(1.0)
            stream(driver, base, frames, rate_hz)
            values = driver.wait_all_handled(timeout_s=120.0)  # the last frame's inference, however slow
            results[configuration] = {
                "cyclonedds_uri": env.get("CYCLONEDDS_URI", os.environ.get("CYCLONEDDS_URI", "")),
                "sent": dict(driver.sent), "node_inputs": input_counts(values),
                "frames_synchronized": int(values.get("frames synchronized", -1)),
                "frames_published": int(values.get("frames published", -1)),
                "drops": _ints(values, "dropped: "), "answers_received_by_driver": len(driver.answers),
                "node_warnings": [line for line in node.output().splitlines() if "not tuned" in line][:2],
            }
        finally:
            results.setdefault(configuration, {})["node_exit_code"] = node.stop()
            driver.close()
    return {"scenario": "accounting", "frames": frames, "rate_hz": rate_hz, "model": model,
            "frame_size": [base[0].camera.width, base[0].camera.height], "results": results}


def run_fuzz(inputs: int = 10_000, valid_every: int = 20, rate_hz: float = 100.0, seed: int = 0,
             work_dir: Path | None = None) -> dict:
    """Malformed triples of every kind, round robin, with valid frames in between (see the module doc)."""
    from depth_completion_ros.data import messages
    from depth_completion_ros.ros.malformed import KINDS, PUBLISHED, malformed_triple
    from depth_completion_ros.ros.synthetic import wall_frame

    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="dcros_fuzz_"))
    rng = np.random.default_rng(seed)
    driver = Driver()
    types = driver.types
    rig = wall_frame(types, 0).lidar_to_camera
    node = NodeProcess(_node_parameters(model="baseline:nearest", warmup=False, tf_wait=0.0),
                       work_dir / "node_fuzz.log")
    expected = Counter()
    sent_by_kind = Counter()
    valid_sent, valid_right, valid_answered = 0, 0, 0
    failures: list[str] = []
    stamp_ns = time.time_ns()
    started = time.monotonic()
    try:
        driver.broadcast_static([messages.build_transform_stamped(
            types, messages.build_header(types, 0, "camera"), "lidar", rig)])
        node.wait_ready()
        driver.wait_matched()
        time.sleep(1.0)  # the reader's side of the match may lag the writer's: early best-effort samples are lost

        def send_valid() -> None:
            nonlocal stamp_ns, valid_sent, valid_right, valid_answered
            stamp_ns += 10_000_000
            frame = wall_frame(types, stamp_ns)
            driver.send(frame.image, frame.camera_info, frame.cloud)
            valid_sent += 1
            answer = driver.wait_answer(stamp_ns, timeout_s=10.0)
            if answer is None:
                failures.append(f"valid frame {valid_sent} stamped {stamp_ns} got no answer")
                return
            valid_answered += 1
            depth = messages.depth_from_image(answer.msg)
            if np.allclose(depth, frame.wall_depth, atol=1e-3):
                valid_right += 1
            else:
                failures.append(f"valid frame {valid_sent}: depth {np.nanmin(depth)}..{np.nanmax(depth)} m, "
                                f"expected {frame.wall_depth}")

        send_valid()  # tf found, the pipeline warm
        period = 1.0 / rate_hz
        for index in range(inputs):
            kind = KINDS[index % len(KINDS)]
            stamp_ns += 10_000_000
            triple = malformed_triple(kind, types, wall_frame(types, stamp_ns), rng)
            driver.send(*triple)
            sent_by_kind[kind.name] += 1
            expected[kind.expected] += 1
            time.sleep(period)
            if (index + 1) % valid_every == 0:
                send_valid()
            if not node.alive:
                failures.append(f"the node died after {index + 1} malformed inputs")
                break
        send_valid()
        values = driver.settled_diagnostics()
    finally:
        alive_at_end = node.alive
        exit_code = node.stop()
        driver.close()
    drops = _ints(values, "dropped: ")
    published = int(values.get("frames published", -1))
    published_bad = published - valid_answered
    return {"scenario": "fuzz", "inputs": inputs, "valid_every": valid_every, "rate_hz": rate_hz,
            "kinds": len(KINDS), "sent_by_kind": dict(sent_by_kind), "expected_by_outcome": dict(expected),
            "counted_drops": drops, "published_total": published, "published_malformed": published_bad,
            "expected_published_malformed": expected[PUBLISHED],
            "node_inputs": input_counts(values), "frames_synchronized": int(values.get("frames synchronized", -1)),
            "valid_frames": {"sent": valid_sent, "answered": valid_answered, "exact_depth": valid_right},
            "node_alive_at_end": alive_at_end, "node_exit_code": exit_code, "failures": failures[:20],
            "wall_s": time.monotonic() - started}


def run_soak(frames: int = 3000, rate_hz: float = 10.0, warmup_frames: int = 300, sample_every: int = 50,
             crop: tuple[int, int] | None = (128, 416), model: str = "default", work_dir: Path | None = None,
             preload: tuple[str, ...] = (), env: dict | None = None) -> dict:
    """Frames at `rate_hz` for a long run; the node's memory, threads and open files over it."""
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="dcros_soak_"))
    base, static, _ = _drive_frames(work_dir, 4, crop=crop)
    driver = Driver()
    node = NodeProcess(_node_parameters(model=model, warmup=False), work_dir / "node_soak.log", preload=preload,
                       env=env)
    samples = []
    try:
        driver.broadcast_static(static)
        node.wait_ready()
        driver.wait_matched()
        time.sleep(1.0)
        start = time.monotonic()

        def sample(index: int) -> None:
            if index % sample_every == 0 or index == frames - 1:
                samples.append({"frame": index, "t_s": time.monotonic() - start, **node.resources()})

        stream(driver, base, frames, rate_hz, after_send=sample)
        time.sleep(2.0)
        samples.append({"frame": frames, "t_s": time.monotonic() - start, **node.resources()})
        values = driver.settled_diagnostics()
    finally:
        exit_code = node.stop()
        driver.close()
    # Resident memory swings by ~10 % between samples (allocator caches): compare the median of the first and
    # the last third of the samples after warm-up, and fit a slope, instead of two single samples.
    after_warmup = [s for s in samples if s["frame"] >= warmup_frames]
    third = max(1, len(after_warmup) // 3)
    early = float(np.median([s["rss_kib"] for s in after_warmup[:third]]))
    late = float(np.median([s["rss_kib"] for s in after_warmup[-third:]]))
    slope = np.polyfit([s["frame"] for s in after_warmup], [s["rss_kib"] for s in after_warmup], 1)[0]
    reference, last = after_warmup[0], samples[-1]
    return {"scenario": "soak", "frames": frames, "rate_hz": rate_hz, "model": model,
            "frame_size": [base[0].camera.width, base[0].camera.height], "preload": list(preload),
            "warmup_frames": warmup_frames, "samples": samples, "rss_peak_kib": last["rss_peak_kib"],
            "rss_steady_kib": late,
            "rss_growth_after_warmup": (late - early) / early,
            "rss_median_kib": {"first_third_after_warmup": early, "last_third": late},
            "rss_slope_kib_per_1000_frames": float(slope * 1000),
            "rss_max_after_warmup_kib": max(s["rss_kib"] for s in after_warmup),
            "threads": {"after_warmup": reference["threads"], "end": last["threads"]},
            "open_files": {"after_warmup": reference["open_files"], "end": last["open_files"]},
            "frames_published": int(values.get("frames published", -1)), "drops": _ints(values, "dropped: "),
            "node_inputs": input_counts(values), "node_exit_code": exit_code}


def run_overload(frames: int = 300, factor: float = 3.0, crop: tuple[int, int] | None = (128, 416),
                 model: str = "default", probe_frames: int = 8, work_dir: Path | None = None,
                 preload: tuple[str, ...] = (), rate_hz: float | None = None, env: dict | None = None) -> dict:
    """Measure the single-frame latency, then publish at `factor` times the throughput it allows (or at `rate_hz`,
    e.g. a 10 Hz sensor); the node's resident memory sampled every 10 frames and its peak (VmHWM) at the end."""
    work_dir = Path(work_dir or tempfile.mkdtemp(prefix="dcros_overload_"))
    base, static, _ = _drive_frames(work_dir, 4, crop=crop)
    driver = Driver()
    node = NodeProcess(_node_parameters(model=model, warmup=False), work_dir / "node_overload.log",
                       preload=preload, env=env)
    rss_samples = []
    try:
        driver.broadcast_static(static)
        node.wait_ready()
        driver.wait_matched()
        time.sleep(1.0)
        latencies = []
        for index in range(probe_frames):  # one at a time: the single-frame latency, stamp to answer
            frame = base[index % len(base)]
            stamp = time.time_ns()
            restamp((frame.image, frame.camera_info, frame.cloud), stamp)
            driver.send(frame.image, frame.camera_info, frame.cloud)
            answer = driver.wait_answer(stamp, timeout_s=30.0)
            if answer is not None and index >= 2:  # the first frames pay for lazy initialisation
                latencies.append((answer.received_ns - stamp) / 1e6)
        single_ms = float(np.median(latencies))
        before = driver.settled_diagnostics()
        answers_before = len(driver.answers)
        period = single_ms / 1000.0 / factor if rate_hz is None else 1.0 / rate_hz
        start = time.monotonic()
        stamps = []
        waiting_seen = Counter()
        for index in range(frames):
            frame = base[index % len(base)]
            stamp = time.time_ns()
            restamp((frame.image, frame.camera_info, frame.cloud), stamp)
            driver.send(frame.image, frame.camera_info, frame.cloud)
            stamps.append(stamp)
            if index % 10 == 0:
                for name, counts in input_counts(driver.diagnostics()).items():
                    waiting_seen[name] = max(waiting_seen[name], counts["waiting"])
                rss_samples.append(node.resources())
            time.sleep(max(0.0, start + (index + 1) * period - time.monotonic()))
        sent_s = time.monotonic() - start
        time.sleep(3 * single_ms / 1000.0 + 1.0)
        after = driver.settled_diagnostics()
        rss_samples.append(node.resources())
    finally:
        exit_code = node.stop()
        driver.close()
    sent = set(stamps)
    ages = np.array([(a.received_ns - a.stamp_ns) / 1e6 for a in driver.answers[answers_before:] if a.stamp_ns in sent])
    halves = np.array_split(ages, 2) if ages.size >= 4 else [ages, ages]
    delta = {key: int(after.get(key, 0)) - int(before.get(key, 0))
             for key in ("frames synchronized", "frames published", "dropped: replaced_by_newer")}
    steady = [sample["rss_kib"] for sample in rss_samples[len(rss_samples) // 2:]]
    return {"scenario": "overload", "frames": frames, "factor": factor, "rate_hz": rate_hz, "model": model,
            "frame_size": [base[0].camera.width, base[0].camera.height], "preload": list(preload),
            "rss_peak_kib": rss_samples[-1]["rss_peak_kib"] if rss_samples else None,
            "rss_steady_kib": float(np.median(steady)) if steady else None,
            "single_frame_latency_ms": single_ms,
            "input_rate_hz": frames / sent_s, "throughput_hz": 1000.0 / single_ms,
            "answers": int(ages.size),
            "age_ms": {"p50": float(np.percentile(ages, 50)), "p90": float(np.percentile(ages, 90)),
                       "p99": float(np.percentile(ages, 99)),
                       "max": float(ages.max()), "first_half_median": float(np.median(halves[0])),
                       "second_half_median": float(np.median(halves[1]))},
            "age_p99_over_single_latency": float(np.percentile(ages, 99)) / single_ms,
            # The node's own per-frame latency while overloaded (a loaded machine slows it beside the probe).
            "pipeline_latency_p90_during_overload_ms": float(after.get("pipeline latency p90 (ms)", "nan")),
            "counts_during_overload": delta, "max_waiting_in_synchronizer": dict(waiting_seen),
            "drops_at_end": _ints(after, "dropped: "), "node_exit_code": exit_code}


SCENARIOS = {"accounting": run_accounting, "fuzz": run_fuzz, "soak": run_soak, "overload": run_overload}


def main() -> int:
    from depth_completion_ros.ros.interfaces import ros_environment

    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    os.environ.setdefault("ROS_DOMAIN_ID", str(np.random.default_rng().integers(1, 101)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--frames", type=int, help="frames to send (accounting, soak, overload)")
    parser.add_argument("--inputs", type=int, help="malformed inputs to send (fuzz)")
    parser.add_argument("--configurations", nargs="+", choices=("given", "untuned"),
                        help="accounting: the DDS configurations to run (default: both; 'untuned' is an untuned "
                             "Cyclone DDS, so with Fast DDS run the script twice, with and without its profile)")
    parser.add_argument("--rate-hz", type=float, help="overload: send at this rate instead of 3x the throughput")
    parser.add_argument("--crop", help="soak, overload: frame size HxW of KITTI's bottom crop, or 'full' for "
                                       "1242x375 (default: 128x416)")
    parser.add_argument("--model", help="soak, overload, accounting: the node's model (default: default)")
    parser.add_argument("--preload-torch", action="store_true",
                        help="soak, overload: run the scenario twice, the node as it starts and the node in a process "
                             "that imported torch first (what the runtime cost before it needed no torch), side by "
                             "side in one JSON")
    parser.add_argument("--baseline-rev", help="soak, overload: also run the node of this git revision (the old "
                                               "path), side by side in one JSON")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args()
    kwargs = {}
    if args.rate_hz:
        kwargs["rate_hz"] = args.rate_hz
    if args.crop:
        kwargs["crop"] = None if args.crop == "full" else tuple(int(v) for v in args.crop.split("x"))
    if args.model:
        kwargs["model"] = args.model
    if args.configurations:
        kwargs["configurations"] = tuple(args.configurations)
    if args.frames is not None:
        kwargs["frames"] = args.frames
    if args.inputs is not None:
        kwargs["inputs"] = args.inputs
    if (args.preload_torch or args.baseline_rev) and args.scenario not in ("soak", "overload"):
        parser.error("--preload-torch and --baseline-rev compare memory: soak or overload only")
    if args.preload_torch or args.baseline_rev:
        variants = {"node": SCENARIOS[args.scenario](**kwargs)}
        if args.preload_torch:
            variants["node_with_torch_imported"] = SCENARIOS[args.scenario](**kwargs, preload=("torch",))
        if args.baseline_rev:
            folder = Path(tempfile.mkdtemp(prefix="dcros_baseline_")) / "checkout"
            try:
                variants[f"node of {args.baseline_rev}"] = SCENARIOS[args.scenario](
                    **kwargs, env=baseline_checkout(args.baseline_rev, folder))
            finally:
                remove_baseline_checkout(folder)
        result = {"scenario": args.scenario, "variants": variants,
                  "rss_peak_kib": {name: variant.get("rss_peak_kib") for name, variant in variants.items()},
                  "rss_steady_kib": {name: variant.get("rss_steady_kib") for name, variant in variants.items()}}
    else:
        result = SCENARIOS[args.scenario](**kwargs)
    result["command"] = "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]])
    result["machine"] = describe_machine()
    result["middleware"] = {"rmw": os.environ.get("RMW_IMPLEMENTATION", "default"),
                            "cyclonedds_uri": os.environ.get("CYCLONEDDS_URI", ""),
                            "fastrtps_default_profiles_file": os.environ.get("FASTRTPS_DEFAULT_PROFILES_FILE", ""),
                            "fastdds_builtin_transports": os.environ.get("FASTDDS_BUILTIN_TRANSPORTS", ""),
                            "ros_automatic_discovery_range": os.environ.get("ROS_AUTOMATIC_DISCOVERY_RANGE", ""),
                            "ros_tier": ros_environment().describe()}
    print(yaml.safe_dump({k: v for k, v in result.items() if k not in ("samples", "machine")}, sort_keys=False))
    write_json(args.json, result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
