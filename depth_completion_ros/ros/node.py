"""The ROS 2 depth completion node (`depth_completion_node`, node name "depth_completion"); Humble and Jazzy.

Topics (relative names, remap them):
  in   image (sensor_msgs/Image), camera_info (sensor_msgs/CameraInfo), points (sensor_msgs/PointCloud2),
       all best effort (qos_profile_sensor_data), which also receives from reliable publishers;
  out  depth/image (32FC1 metres, REP 118, invalid = NaN or 0 per `invalid_value`, the camera image's
       header), depth/camera_info (the input CameraInfo under the same header), and, when enabled,
       depth/image_colorized (bgr8) and sparse_depth (32FC1 metres). Output QoS: parameter `output_qos`,
       default reliable keep-last 5, which both reliable subscribers (depth_image_proc) and best-effort
       ones (RViz) accept; best effort ("sensor_data") would leave reliable subscribers with nothing.
       self_check (diagnostic_msgs/DiagnosticArray under the camera image's header, one status with the
       frame's LiDAR hold-out self-check), on self-check frames while someone subscribes.

Accuracy without ground truth: every `self_check.every_n_frames`-th frame holds `self_check.fraction` of
its LiDAR pixels out of the network's input and scores the prediction there (`self_check` module); the
status "depth completion self-check" on /diagnostics reports RMSE and MAE pooled over the last
`self_check.window` such frames, overall and by distance band, WARN / ERROR at `self_check.warn_rmse_mm` /
`self_check.error_rmse_mm`, and the image/LiDAR edge agreement (WARN below `self_check.warn_edge_agreement`
when set: the hold-out cannot see a mis-calibrated LiDAR->camera transform, the edges can).

Threads: a single-threaded executor runs the subscriptions, tf and diagnostics; every callback there is
short. The synchronizer callback only drops the newest image/camera_info/points triple into a one-slot
mailbox (the frame it replaces is counted as dropped); one worker thread takes the newest triple, looks up
the transform without blocking, runs the pipeline (conversion, projection, inference) and publishes.

ROS 2: a distribution (Humble, Jazzy), or ROS 2 Jazzy's core from the Python package registry (rclpy and the
message packages, `pip install depth_completion_ros[ros]`), which has no message_filters, tf2_ros or
diagnostic_updater. Both run the same code: the approximate-time synchronizer is the package's own
(`data.sync.ApproximateTimePairing`, message_filters' policy, the one bag evaluation uses), /diagnostics is
published as diagnostic_updater lays it out (`ros.diagnostics`), and tf comes from tf2_ros where it is
installed, else from the node's own /tf and /tf_static listener where tf2_msgs is (`dcros ros-setup` builds
it), else from `lidar_to_camera` / `calibration_file` only, which the node says at start-up.

Bad input (malformed clouds, unknown encodings, images whose size disagrees with CameraInfo) and failed
inference are logged (throttled per reason) and counted as drops; the node keeps running.
"""
from __future__ import annotations

import array
import dataclasses
import signal
import sys
import threading

import numpy as np

try:
    import rclpy
    from rcl_interfaces.msg import FloatingPointRange, IntegerRange, ParameterDescriptor, SetParametersResult
    from rclpy.duration import Duration
    try:
        from rclpy.event_handler import SubscriptionEventCallbacks
    except ImportError:  # Humble: the same class lives in rclpy.qos_event
        from rclpy.qos_event import SubscriptionEventCallbacks
    from rclpy.exceptions import ParameterException
    from rclpy.executors import ExternalShutdownException, SingleThreadedExecutor
    from rclpy.logging import get_logger
    from rclpy.node import Node
    from rclpy.qos import DurabilityPolicy, HistoryPolicy, QoSProfile, ReliabilityPolicy, qos_profile_sensor_data
    from rclpy.time import Time
    from rclpy.utilities import get_rmw_implementation_identifier
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
except ImportError as _error:  # the package installed without ROS 2
    raise ImportError(f"the depth completion node needs ROS 2's rclpy and sensor_msgs ({_error}): source a ROS 2 "
                      f"distribution (source /opt/ros/<distro>/setup.bash), or install ROS 2 Jazzy from the "
                      f"Python package registry with pip install 'depth_completion_ros[ros]'") from _error

from ..data import messages
from ..data.sync import ApproximateTimePairing
from ..pipeline import TAKEN_AS_RECTIFIED, FrameProcessor, PipelineOptions
from . import latest_frame
from .colorize import colorize_depth
from .dds_tuning import receive_buffer_warning, required_receive_buffer
from .diagnostics import DiagnosticsPublisher, diagnostic_status
from .frame_handler import FrameHandler
from .latest_frame import DropCounter, FrameWorker, LatestFrameMailbox
from .monitoring import (
    INPUTS, InputAccounting, LatencyWindow, LogThrottle, RateMeter, SelfCheckWindow,
    describe_roi, summarize, summarize_self_check,
)
from .params import (
    NODE_NAME,
    PARAMETERS,
    PARAMETER_SPECS,
    NodeSettings,
    ParameterError,
    accepted_model_names,
    build_engine,
    check_self_check_thresholds,
    check_value,
    validate_parameters,
)
from .transforms import LatestTransforms, TransformResolver

OUTPUT_DEPTH = 5  # keep-last depth of the output publishers
LOG_PERIOD_S = 5.0
WORKER_STOP_TIMEOUT_S = 10.0
# Logged once the worker takes frames; bag_replay.launch.py starts the player on it.
READY_MESSAGE = "ready for frames"
RUNTIME_PARAMETERS = tuple(spec.name for spec in PARAMETERS if not spec.read_only)
# tf2_ros' TransformListener subscriptions: /tf volatile, /tf_static transient local, both reliable, depth 100.
TF_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                    durability=DurabilityPolicy.VOLATILE)
TF_STATIC_QOS = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=100, reliability=ReliabilityPolicy.RELIABLE,
                           durability=DurabilityPolicy.TRANSIENT_LOCAL)
SELF_CHECK_STATUS = "depth completion self-check"
# Runtime self-check parameters -> the PipelineOptions field each one sets.
SELF_CHECK_OPTIONS = {"self_check.fraction": "self_check_fraction",
                      "self_check.every_n_frames": "self_check_every_n",
                      "self_check.second_run": "self_check_second_run"}


def _descriptor(spec) -> ParameterDescriptor:
    """A ParameterDescriptor from a ParameterSpec (type comes from the default value at declaration)."""
    constraints = f"one of: {', '.join(spec.choices)}" if spec.choices else ""
    descriptor = ParameterDescriptor(description=spec.description, read_only=spec.read_only,
                                     additional_constraints=constraints)
    if spec.minimum is not None and spec.maximum is not None:
        if spec.kind == "double":
            descriptor.floating_point_range = [FloatingPointRange(
                from_value=float(spec.minimum), to_value=float(spec.maximum), step=0.0)]
        elif spec.kind == "int":
            descriptor.integer_range = [IntegerRange(
                from_value=int(spec.minimum), to_value=int(spec.maximum), step=1)]
    return descriptor


def _plain(value):
    """rclpy hands array parameters over as array.array; validation takes lists."""
    return list(value) if isinstance(value, array.array) else value


def _output_qos(name: str) -> QoSProfile:
    if name == "sensor_data":
        return qos_profile_sensor_data
    return QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=OUTPUT_DEPTH,
                      reliability=ReliabilityPolicy.RELIABLE, durability=DurabilityPolicy.VOLATILE)


class DepthCompletionNode(Node):
    """Camera image + CameraInfo + LiDAR cloud -> dense depth image. See the module docstring.

    Keyword arguments go to rclpy.node.Node (e.g. `parameter_overrides`, `namespace`).
    Raises ParameterError / FileNotFoundError at construction for bad parameters or a missing model.
    """

    def __init__(self, **node_kwargs):
        super().__init__(NODE_NAME, **node_kwargs)
        self._node_closed = False
        self.settings = self._declare_and_validate_parameters()
        settings = self.settings

        self.engine = build_engine(settings)
        self.processor = FrameProcessor(self.engine, options=PipelineOptions(
            min_depth=settings.min_depth, max_depth=settings.max_depth, roi=settings.roi,
            roi_height=settings.roi_height, roi_margin=settings.roi_margin, invalid_value=settings.invalid_value,
            rectify=settings.rectify,
            self_check_fraction=settings.self_check_fraction,
            self_check_every_n=settings.self_check_every_n_frames,
            self_check_second_run=settings.self_check_second_run))
        self.get_logger().info(f"inference engine: {self.engine!r} "
                               f"(backend {settings.backend}: {getattr(self.engine, 'backend_reason', 'requested')})")
        self._last_roi = None  # (first row, end row, image height) of the newest published frame

        self.drops = DropCounter()
        self.accounting = InputAccounting()
        self.published = 0
        self.rectified = 0  # frames of a raw camera published rectified
        self.unrectified = 0  # frames of a raw camera published unrectified (rectify false, or a stereo P)
        self._lost_at_last_report = 0
        self._largest_input_bytes = 0
        self._rmw = get_rmw_implementation_identifier()
        self._dds_need_reported = 0
        self._warn_if_dds_untuned(None)
        self.mailbox = LatestFrameMailbox(self.drops)
        self.input_rate = RateMeter()
        self.output_rate = RateMeter()
        self.pipeline_ms = LatencyWindow()
        self.age_ms = LatencyWindow()
        self._log_throttle = LogThrottle(LOG_PERIOD_S)
        self._drops_at_last_report = self.drops.snapshot()
        self._publish_optional = {"publish_colorized": settings.publish_colorized,
                                  "publish_sparse": settings.publish_sparse}
        self.self_check_window = SelfCheckWindow(settings.self_check_window)
        self._self_check_thresholds = {"self_check.warn_rmse_mm": settings.self_check_warn_rmse_mm,
                                       "self_check.error_rmse_mm": settings.self_check_error_rmse_mm,
                                       "self_check.warn_edge_agreement": settings.self_check_warn_edge_agreement}

        self._tf_buffer = None
        self._tf_listener = None
        self.tf_source = "none"  # "tf2_ros", "tf_listener" (the node's own) or "none"
        lookup = self._make_tf_lookup() if settings.use_tf else None
        if settings.use_tf and lookup is None and settings.lidar_to_camera is None:
            raise ParameterError(
                "use_tf is true but this ROS 2 has no tf: neither tf2_ros nor tf2_msgs can be imported (ROS 2 from "
                "the Python package registry has neither; `dcros ros-setup` builds tf2_msgs into this environment); "
                "set lidar_to_camera or calibration_file")
        self.transforms = TransformResolver(lookup, settings.lidar_to_camera, settings.tf_wait)

        qos = _output_qos(settings.output_qos)
        self.depth_publisher = self.create_publisher(Image, "depth/image", qos)
        self.info_publisher = self.create_publisher(CameraInfo, "depth/camera_info", qos)
        self.colorized_publisher = self.create_publisher(Image, "depth/image_colorized", qos)
        self.sparse_publisher = self.create_publisher(Image, "sparse_depth", qos)
        self.self_check_publisher = self._make_self_check_publisher(qos)
        self.add_on_set_parameters_callback(self._on_set_parameters)

        # Best effort (sensor data) receives from best-effort and reliable publishers alike. Each input is
        # counted as it arrives and where the middleware reports a message lost, so that /diagnostics tells
        # transport loss from the rest, then paired by header stamp with message_filters' approximate-time policy.
        self._pairing = ApproximateTimePairing(len(INPUTS), settings.sync_queue_size, settings.sync_slop)
        self._pairing_lock = threading.Lock()
        self._input_subscribers = []
        for index, (name, msg_type) in enumerate(zip(INPUTS, (Image, CameraInfo, PointCloud2))):
            events = SubscriptionEventCallbacks(message_lost=lambda info, name=name: self.accounting.lose(
                name, info.total_count_change))
            self._input_subscribers.append(self.create_subscription(
                msg_type, name, lambda msg, index=index: self._on_input(index, msg), qos_profile_sensor_data,
                event_callbacks=events))

        self._diagnostics = self._make_diagnostics()
        self.handler = FrameHandler(self.processor, self.transforms, self._publish,
                                    on_transform_change=self._on_transform_change)
        self.worker = FrameWorker(self.mailbox, self.handler, on_error=self._on_frame_error,
                                  on_start=self._start_worker)
        self.worker.start()
        self.get_logger().info(
            f"subscribed to {self.resolve_topic_name('image')}, {self.resolve_topic_name('camera_info')}, "
            f"{self.resolve_topic_name('points')} (slop {settings.sync_slop} s, queue {settings.sync_queue_size});"
            f" publishing {self.resolve_topic_name('depth/image')} ({settings.output_qos})")

    # ------------------------------------------------------------------------------------ parameters
    def _declare_and_validate_parameters(self) -> NodeSettings:
        for spec in PARAMETERS:
            default = list(spec.default) if isinstance(spec.default, tuple) else spec.default
            self.declare_parameter(spec.name, default, _descriptor(spec))
        values = {spec.name: _plain(self.get_parameter(spec.name).value) for spec in PARAMETERS}
        return validate_parameters(values, model_names=accepted_model_names())

    def _on_set_parameters(self, parameters) -> SetParametersResult:
        """Runtime changes: the optional outputs and the self-check (the others are read-only). All of a
        request is checked before any of it applies."""
        updates = {}
        for parameter in parameters:
            if parameter.name in RUNTIME_PARAMETERS:
                try:
                    updates[parameter.name] = check_value(PARAMETER_SPECS[parameter.name], parameter.value)
                except ParameterError as error:
                    return SetParametersResult(successful=False, reason=str(error))
        thresholds = {**self._self_check_thresholds,
                      **{name: value for name, value in updates.items() if name in self._self_check_thresholds}}
        try:
            check_self_check_thresholds(thresholds["self_check.warn_rmse_mm"], thresholds["self_check.error_rmse_mm"])
        except ParameterError as error:
            return SetParametersResult(successful=False, reason=str(error))
        self._self_check_thresholds.update(thresholds)
        options = {SELF_CHECK_OPTIONS[name]: value for name, value in updates.items() if name in SELF_CHECK_OPTIONS}
        if options:  # one assignment: the worker reads the options once per frame
            self.processor.options = dataclasses.replace(self.processor.options, **options)
        self._publish_optional.update({name: value for name, value in updates.items()
                                       if name in self._publish_optional})
        return SetParametersResult(successful=True)

    # -------------------------------------------------------------------------------------------- tf
    def _make_tf_lookup(self):
        """A non-blocking camera_frame <- lidar_frame lookup: tf2_ros' buffer where tf2_ros is installed, else the
        node's own /tf and /tf_static listener where tf2_msgs is, else None (said once, here)."""
        try:
            import tf2_ros
        except ImportError:
            return self._make_own_tf_lookup()
        self.tf_source = "tf2_ros"
        self._tf_buffer = tf2_ros.Buffer()
        # Listens on /tf and /tf_static (transient local) through this node's executor.
        self._tf_listener = tf2_ros.TransformListener(self._tf_buffer, self)
        zero = Duration(seconds=0.0)

        def lookup(camera_frame: str, lidar_frame: str):
            # Zero timeout: can_transform answers from the buffer at once, it never waits for data.
            latest = Time()
            try:
                if not self._tf_buffer.can_transform(camera_frame, lidar_frame, latest, timeout=zero):
                    return None
                stamped = self._tf_buffer.lookup_transform(camera_frame, lidar_frame, latest, timeout=zero)
            except tf2_ros.TransformException:
                return None
            return messages.transform_from_msg(stamped)

        return lookup

    def _make_own_tf_lookup(self):
        """Subscriptions to /tf and /tf_static (as tf2_ros' TransformListener makes them) feeding LatestTransforms."""
        fallback = (f"calibration_file {self.settings.calibration_file}" if self.settings.calibration_file
                    else "the lidar_to_camera parameter")
        try:
            from tf2_msgs.msg import TFMessage
        except ImportError as error:
            if self.settings.lidar_to_camera is not None:
                self.get_logger().warning(
                    f"use_tf cannot be honoured: neither tf2_ros nor tf2_msgs can be imported ({error}); the "
                    f"LiDAR->camera transform comes from {fallback} only. On ROS 2 from the Python package "
                    "registry, `dcros ros-setup` builds tf2_msgs so that the node listens to /tf and /tf_static.")
            return None
        self.tf_source = "tf_listener"
        self._tf_latest = LatestTransforms()

        def on_tf(message: TFMessage) -> None:
            if self._tf_latest.add(message.transforms):
                allowed, _ = self._log_throttle.allow("tf_rejected")
                if allowed:
                    self.get_logger().warning(f"ignored {self._tf_latest.rejected} transform(s) on /tf or /tf_static "
                                              "so far: not finite, no rotation, or a frame without a name")

        self._tf_subscribers = [self.create_subscription(TFMessage, "/tf", on_tf, TF_QOS),
                                self.create_subscription(TFMessage, "/tf_static", on_tf, TF_STATIC_QOS)]
        self.get_logger().info("tf2_ros is not installed: the LiDAR->camera transform comes from /tf and /tf_static "
                               "through the node's own listener (the newest transform of every edge)")
        return self._tf_latest.lookup

    # ------------------------------------------------------------------------------- executor side
    def _on_input(self, index: int, message) -> None:
        """Subscription callback of input `index` (INPUTS' order): count it, pair it, hand a complete triple on."""
        stamp_ns = messages.stamp_to_ns(message.header.stamp)
        self.accounting.receive(INPUTS[index], stamp_ns)
        with self._pairing_lock:
            matched = self._pairing.add(index, stamp_ns, message)
        if matched is not None:
            self._on_synchronized(*matched)

    def _on_synchronized(self, image: Image, camera_info: CameraInfo, cloud: PointCloud2) -> None:
        """A synchronized triple: store it as the newest and return."""
        self.input_rate.tick()
        self.accounting.pair()
        largest = max(len(image.data), len(cloud.data))
        if largest > self._largest_input_bytes:  # re-check the DDS tuning against the sizes actually seen
            self._largest_input_bytes = largest
            self._warn_if_dds_untuned(largest)
        self.mailbox.put((image, camera_info, cloud))

    def _warn_if_dds_untuned(self, message_bytes: int | None) -> None:
        """Warn at start-up, and again only when larger messages than before raise what is needed."""
        needed = required_receive_buffer(message_bytes)
        if needed <= self._dds_need_reported:
            return
        warning = receive_buffer_warning(self._rmw, message_bytes=message_bytes)
        if warning:
            self._dds_need_reported = needed
            self.get_logger().warning(warning)

    def _synchronizer_waiting(self) -> dict[str, int]:
        """Messages per input waiting in the synchronizer's queues."""
        with self._pairing_lock:
            return dict(zip(INPUTS, self._pairing.pending()))

    # --------------------------------------------------------------------------------- worker side
    def _start_worker(self) -> None:
        """First thing in the worker thread: the warm-up (when enabled), then the READY_MESSAGE line, which
        bag_replay.launch.py waits for before it starts playing."""
        if self.settings.warmup:
            from ..inference import KITTI_SIZE

            # KITTI's crop size (the shipped models' size), or roi_height rows of it.
            height, width = KITTI_SIZE
            if self.settings.roi == "bottom":
                height = self.settings.roi_height
            try:
                self.engine.warmup(height, width)
                self.get_logger().info(f"warm-up done ({width}x{height})")
            except Exception as error:  # noqa: BLE001 - frames may still work; say so and go on
                self._on_frame_error("start", error)
        self.get_logger().info(READY_MESSAGE)

    def _on_transform_change(self, camera_frame: str, lidar_frame: str, resolution) -> None:
        self.get_logger().info(f"LiDAR->camera transform {camera_frame!r} <- {lidar_frame!r} now from "
                               f"{resolution.source}")

    def _publish(self, result, image: Image, camera_info: CameraInfo) -> None:
        header = image.header
        invalid = self.settings.invalid_value
        # Counted before the depth goes out, so that whoever receives it can already read the count.
        if result.raw_camera is not None:
            self.rectified += 1
        elif result.unrectified is not None:
            if not self.unrectified:  # said once, at the first such frame; counted on /diagnostics
                log = self.get_logger().info if result.unrectified == TAKEN_AS_RECTIFIED else self.get_logger().warning
                log(f"camera_info has lens distortion (distortion_model {camera_info.distortion_model!r}, d "
                    f"{list(camera_info.d)}) or a rectification r, and its image is not rectified: "
                    f"{result.unrectified} (frames counted as 'frames not rectified')")
            self.unrectified += 1
        self.depth_publisher.publish(messages.make_message(
            Image, header=header, **messages.depth_to_image_fields(result.dense, invalid=invalid)))
        self.info_publisher.publish(self._output_camera_info(result, header, camera_info))
        # The optional outputs cost a colour lookup or a copy: skip them when nobody listens.
        if self._publish_optional["publish_colorized"] and self.colorized_publisher.get_subscription_count():
            colour = colorize_depth(result.dense, self.settings.min_depth, self.settings.max_depth)
            self.colorized_publisher.publish(messages.build_image(Image, header, colour, "bgr8"))
        if self._publish_optional["publish_sparse"] and self.sparse_publisher.get_subscription_count():
            self.sparse_publisher.publish(messages.make_message(
                Image, header=header, **messages.depth_to_image_fields(result.sparse, invalid=invalid)))
        if result.self_check is not None:
            self._publish_self_check(result.self_check, header)
        self.output_rate.tick()
        self.published += 1
        self.pipeline_ms.add(result.timings_ms["total"])
        self._last_roi = (*result.roi_rows, result.dense.shape[0])
        age_ns = self.get_clock().now().nanoseconds - messages.stamp_to_ns(header.stamp)
        self.age_ms.add(age_ns / 1e6)

    @staticmethod
    def _output_camera_info(result, header, camera_info: CameraInfo) -> CameraInfo:
        """The CameraInfo of the published depth: the input's, or where the image was rectified the rectified
        camera's (d zero, r identity, k = P's 3x3, p as given), as image_proc's rectified image has it."""
        if result.raw_camera is None:
            return CameraInfo(header=header, height=camera_info.height, width=camera_info.width,
                              distortion_model=camera_info.distortion_model, d=camera_info.d, k=camera_info.k,
                              r=camera_info.r, p=camera_info.p, binning_x=camera_info.binning_x,
                              binning_y=camera_info.binning_y, roi=camera_info.roi)
        rectified = result.raw_camera.rectified
        return CameraInfo(header=header, height=rectified.height, width=rectified.width,
                          distortion_model=camera_info.distortion_model, d=[0.0] * len(camera_info.d),
                          k=rectified.K.reshape(-1).tolist(), r=np.eye(3).reshape(-1).tolist(), p=camera_info.p,
                          binning_x=camera_info.binning_x, binning_y=camera_info.binning_y, roi=camera_info.roi)

    def _on_frame_error(self, reason: str, error: BaseException) -> None:
        if not self.context.ok():  # publishing raced with shutdown: nothing worth reporting
            return
        allowed, held_back = self._log_throttle.allow(reason)
        if not allowed:
            return
        more = f" ({held_back} more since the last message)" if held_back else ""
        if reason == "start":
            self.get_logger().warning(f"warm-up failed: {type(error).__name__}: {error}")
        elif reason == latest_frame.INFERENCE_ERROR:
            self.get_logger().error(f"dropped a frame ({reason}): {type(error).__name__}: {error}{more}")
        elif reason == latest_frame.NO_TRANSFORM:
            settings = self.settings
            self.get_logger().warning(
                f"dropped a frame ({reason}): {error} (use_tf {settings.use_tf}, tf_wait {settings.tf_wait} s, "
                f"lidar_to_camera {'set' if settings.lidar_to_camera is not None else 'not set'}){more}")
        else:
            self.get_logger().warning(f"dropped a frame ({reason}): {error}{more}")

    # ----------------------------------------------------------------------------------- self-check
    def _make_self_check_publisher(self, qos):
        try:
            from diagnostic_msgs.msg import DiagnosticArray
        except ImportError:  # diagnostic_msgs is an exec dependency; a bare rclpy may lack it
            return None
        return self.create_publisher(DiagnosticArray, "self_check", qos)

    def _self_check_summary(self, window: dict):
        options = self.processor.options
        thresholds = self._self_check_thresholds
        return summarize_self_check(window, thresholds["self_check.warn_rmse_mm"],
                                    thresholds["self_check.error_rmse_mm"], options.self_check_fraction,
                                    options.self_check_every_n, thresholds["self_check.warn_edge_agreement"])

    def _publish_self_check(self, check, header) -> None:
        """Pool the frame's self-check for /diagnostics, and publish it alone on `self_check` if anyone listens."""
        self.self_check_window.add(check)
        if self.self_check_publisher is None or not self.self_check_publisher.get_subscription_count():
            return
        from diagnostic_msgs.msg import DiagnosticArray

        frame = SelfCheckWindow(1)
        frame.add(check)
        status = diagnostic_status(self._self_check_summary(frame.summary()), f"{self.get_name()}: {SELF_CHECK_STATUS}",
                                   self._hardware_id)
        self.self_check_publisher.publish(DiagnosticArray(header=header, status=[status]))

    # ---------------------------------------------------------------------------------- diagnostics
    @property
    def _hardware_id(self) -> str:
        return f"{self.engine.backend}:{self.engine.device}"

    def _make_diagnostics(self):
        """/diagnostics every `diagnostic_updater.period` s: the node's status and the self-check's."""
        try:
            import diagnostic_msgs.msg  # noqa: F401 - an exec dependency; a bare rclpy may lack it
        except ImportError as error:
            self.get_logger().warning(f"diagnostic_msgs is not installed ({error}): no /diagnostics")
            return None

        def report():
            drops = self.drops.snapshot()
            recent = {reason: count - self._drops_at_last_report.get(reason, 0) for reason, count in drops.items()}
            self._drops_at_last_report = drops
            accounting = self.accounting.snapshot(self._synchronizer_waiting())
            lost = sum(counts["lost_in_transport"] + counts["missing_by_stamp_gaps"] for counts in accounting.values())
            lost_recent, self._lost_at_last_report = lost - self._lost_at_last_report, lost
            summary = summarize(self.input_rate.rate(), self.output_rate.rate(), self.pipeline_ms.summary(),
                                self.age_ms.summary(), drops, recent, backend=repr(self.engine),
                                accounting=accounting, published=self.published, lost_recent=lost_recent,
                                backend_reason=getattr(self.engine, "backend_reason", ""),
                                roi=describe_roi(self.settings.roi, self._last_roi))
            summary.values["tf"] = self.tf_source
            summary.values["frames rectified"] = str(self.rectified)
            summary.values["frames not rectified"] = str(self.unrectified)
            return summary

        return DiagnosticsPublisher(self, self._hardware_id, [
            ("depth completion", report),
            (SELF_CHECK_STATUS, lambda: self._self_check_summary(self.self_check_window.summary()))])

    # ------------------------------------------------------------------------------------- shutdown
    def close(self) -> None:
        """Stop and join the worker, then destroy the node. Safe to call twice."""
        if self._node_closed:
            return
        self._node_closed = True
        if self.worker.busy:
            self.get_logger().info("shutting down: finishing the frame in hand first")
        if not self.worker.stop(timeout=WORKER_STOP_TIMEOUT_S):
            self.get_logger().warning(f"the worker thread did not stop within {WORKER_STOP_TIMEOUT_S} s")
        self.destroy_node()


def _ignore_repeated_shutdown_signals() -> None:
    """Once shutdown has begun, further SIGINT/SIGTERM are the same request again: Ctrl-C under `ros2 launch`
    reaches the node twice (from the terminal's process group and forwarded by launch), and launch follows
    up with SIGTERM. Left to Python's default handler, the repeat raises KeyboardInterrupt inside the worker
    join and the process aborts with a traceback. The join is bounded (WORKER_STOP_TIMEOUT_S) and launch's
    SIGKILL remains the last resort."""
    if threading.current_thread() is threading.main_thread():
        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, signal.SIG_IGN)


def main(args: list[str] | None = None) -> int:
    """Console script `depth_completion_node`: spin the node on a single-threaded executor until shutdown.

    One executor thread is enough: its callbacks only store messages, and the heavy work runs on the
    node's own worker thread. Returns 0 on a normal shutdown, 1 when the node cannot start.
    """
    rclpy.init(args=args)
    # Ignore repeats as early as rclpy notices the first signal (its shutdown callbacks), where that runs on
    # the main thread; the loop below covers a repeat that lands before.
    rclpy.get_default_context().on_shutdown(_ignore_repeated_shutdown_signals)
    node = None
    status = 0
    executor = SingleThreadedExecutor()
    try:
        node = DepthCompletionNode()
        executor.add_node(node)
        executor.spin()
    except (KeyboardInterrupt, ExternalShutdownException):
        pass
    except (ValueError, FileNotFoundError, ParameterException) as error:
        # Bad parameters (ours, or out of a declared range) or no model: one clear line, no traceback.
        get_logger(NODE_NAME).fatal(f"cannot start: {error}")
        status = 1
    finally:
        while True:
            try:
                _ignore_repeated_shutdown_signals()
                break
            except KeyboardInterrupt:  # a repeated Ctrl-C that arrived before the handler was replaced
                continue
        if node is not None:
            node.close()
        executor.shutdown()
        rclpy.try_shutdown()
    return status


if __name__ == "__main__":
    sys.exit(main())
