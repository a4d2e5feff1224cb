"""Message conversion at KITTI size: the package's converter (`data.messages`) against cv_bridge and sensor_msgs_py.

    python benchmarks/bench_message_conversion.py --json benchmarks/results/message_conversion.json

Source ROS 2 first (`source /opt/ros/<distro>/setup.bash`): the messages are rclpy's sensor_msgs classes, as
the node receives them. Timed in `--runs` rounds that call every conversion once (`time_round_robin`), the
median kept:

- image in: a 1242x375 bgr8 Image to an RGB array (`messages.rgb_from_image`, what the node does) against
  `CvBridge().imgmsg_to_cv2(msg, "rgb8")`, and the zero-copy view (`messages.image_to_numpy`) against
  `imgmsg_to_cv2(msg, "passthrough")`;
- cloud in: a ~120k-point FLOAT32 x, y, z, i PointCloud2 to (N, 3) x, y, z (`messages.pointcloud2_to_xyz`, which
  always checks the points and drops non-finite ones) against
  `sensor_msgs_py.point_cloud2.read_points_numpy(msg, ("x", "y", "z"))`, once for a finite cloud (is_dense true:
  `skip_nans` then checks nothing) and once for the same cloud with `--nan-fraction` of its points NaN
  (is_dense false, `skip_nans=True`), as drivers publishing organised clouds send them;
- depth out: a 1242x375 float32 depth map (metres, 0 = none) to a 32FC1 Image (`messages.depth_to_image_fields`
  and `messages.make_message`, which write NaN where there is no depth, REP 118) against `cv2_to_imgmsg`, bare
  and after the same NaN marking.

Every pair is checked to produce the same values before it is timed. The script also records whether each
converter accepts the message classes of the `rosbags` library, which offline evaluation reads bags with.
cv_bridge needs OpenCV (`pip install "opencv-python-headless<5"`); a library that cannot be imported is
reported as such and its rows are left out.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import describe_machine, write_json  # noqa: E402
from bench_projection import CAMERA, velodyne_like_cloud  # noqa: E402

from depth_completion_ros.data import messages  # noqa: E402

STAMP_NS = 1_317_646_000_123_456_789


def kitti_rgb(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A KITTI-size uint8 RGB image (noise: conversion cost does not depend on content)."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def kitti_depth(height: int, width: int, seed: int = 1) -> np.ndarray:
    """A dense-looking float32 depth map in metres with ~5 % of pixels without depth (0)."""
    rng = np.random.default_rng(seed)
    depth = rng.uniform(2.0, 80.0, (height, width)).astype(np.float32)
    depth[rng.random((height, width)) < 0.05] = 0.0
    return depth


def build_messages(types, rgb: np.ndarray, cloud: np.ndarray):
    """(bgr8 Image, FLOAT32 x,y,z,i PointCloud2) of `types`' classes (rclpy or rosbags)."""
    image = messages.build_image(types["sensor_msgs/msg/Image"],
                                 messages.build_header(types, STAMP_NS, "camera_color_left"),
                                 np.ascontiguousarray(rgb[..., ::-1]), "bgr8")
    points = messages.build_pointcloud2(types, messages.build_header(types, STAMP_NS, "velo_link"), cloud)
    return image, points


def time_round_robin(functions: dict, runs: int, warmup: int = 2) -> dict:
    """`_common.time_call`'s figures for every function, timed in rounds that call each function once.

    Interleaving matters here: converting MB-sized buffers allocates MB-sized arrays, and how fast that is
    depends on the allocator's state (fresh pages from the kernel, or reused ones), which the calls before
    shape: timed in blocks, one after the other, the same conversion took 0.7 ms in one run and 4.6 ms in
    the next. In rounds, every conversion sees the same conditions."""
    names = list(functions)
    samples = {name: [] for name in names}
    for round_index in range(warmup + runs):
        shift = round_index % len(names)  # vary who goes first, too
        for name in names[shift:] + names[:shift]:
            start = time.perf_counter()
            functions[name]()
            if round_index >= warmup:
                samples[name].append((time.perf_counter() - start) * 1000.0)
    figures = {}
    for name, values in samples.items():
        values.sort()
        figures[name] = {"median_ms": values[len(values) // 2],
                         "p90_ms": values[min(len(values) - 1, int(0.9 * len(values)))],
                         "min_ms": values[0], "runs": runs}
    return figures


def _optional(name: str):
    """The imported module, or the reason it cannot be imported."""
    try:
        if name == "cv_bridge":
            import cv_bridge

            return cv_bridge, None
        import sensor_msgs_py.point_cloud2 as point_cloud2

        return point_cloud2, None
    except ImportError as error:  # also catches a cv_bridge whose OpenCV is missing
        return None, f"{type(error).__name__}: {error}"


def _accepts(function, expected: np.ndarray) -> str:
    """'yes' when function() returns `expected`, else what went wrong."""
    try:
        result = np.asarray(function())
    except Exception as error:  # noqa: BLE001 - the failure itself is the finding
        return f"no ({type(error).__name__}: {str(error).splitlines()[0][:120]})"
    return "yes" if np.array_equal(result, expected) else "no (different values)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=120_000)
    parser.add_argument("--nan-fraction", type=float, default=0.02,
                        help="share of NaN points in the second cloud")
    parser.add_argument("--runs", type=int, default=30, help="timed calls per conversion (the median is kept)")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.runs < 20:
        parser.error("--runs must be at least 20")
    try:
        from depth_completion_ros.ros.synthetic import rclpy_types

        types = rclpy_types()
    except ImportError as error:
        print(f"needs ROS 2's Python message classes: source /opt/ros/<distro>/setup.bash first ({error})")
        return 2
    Image = types["sensor_msgs/msg/Image"]

    height, width = CAMERA.height, CAMERA.width
    rgb, depth = kitti_rgb(height, width), kitti_depth(height, width)
    cloud = velodyne_like_cloud(args.points)
    image_msg, cloud_msg = build_messages(types, rgb, cloud)
    header = image_msg.header
    xyz = cloud[:, :3]
    holed = cloud.copy()
    holed[np.random.default_rng(2).random(len(holed)) < args.nan_fraction, :3] = np.nan
    holed_msg = messages.build_pointcloud2(types, messages.build_header(types, STAMP_NS, "velo_link"), holed)
    holed_xyz = holed[np.isfinite(holed[:, :3]).all(axis=1), :3]
    nan_depth = np.where(depth > 0, depth, np.float32(np.nan)).astype(np.float32)

    bridge_module, bridge_missing = _optional("cv_bridge")
    pc2, pc2_missing = _optional("sensor_msgs_py")
    bridge = bridge_module.CvBridge() if bridge_module else None

    def ours_depth_out():
        return messages.make_message(Image, header=header, **messages.depth_to_image_fields(depth))

    def marked_cv_bridge_depth_out():
        return bridge.cv2_to_imgmsg(np.where(depth > 0, depth, np.float32(np.nan)).astype(np.float32),
                                    encoding="32FC1", header=header)

    # name: (direction, function, what it must return (None: an Image whose pixels must match nan_depth)).
    cases = {
        "image_rgb/ours": ("image in", lambda: messages.rgb_from_image(image_msg), rgb),
        "image_view/ours": ("image in", lambda: messages.image_to_numpy(image_msg), rgb[..., ::-1]),
        "cloud_xyz/ours": ("cloud in", lambda: messages.pointcloud2_to_xyz(cloud_msg)[0], xyz),
        "cloud_xyz_with_nans/ours": ("cloud in", lambda: messages.pointcloud2_to_xyz(holed_msg)[0], holed_xyz),
        "depth_out/ours": ("depth out", ours_depth_out, None),
    }
    if bridge:
        cases["image_rgb/cv_bridge"] = ("image in", lambda: bridge.imgmsg_to_cv2(image_msg, "rgb8"), rgb)
        cases["image_view/cv_bridge"] = ("image in", lambda: bridge.imgmsg_to_cv2(image_msg, "passthrough"),
                                         rgb[..., ::-1])
        cases["depth_out/cv_bridge"] = ("depth out", lambda: bridge.cv2_to_imgmsg(
            nan_depth, encoding="32FC1", header=header), None)
        cases["depth_out/cv_bridge_with_nan_marking"] = ("depth out", marked_cv_bridge_depth_out, None)
    if pc2:
        cases["cloud_xyz/sensor_msgs_py"] = ("cloud in", lambda: pc2.read_points_numpy(
            cloud_msg, field_names=("x", "y", "z")), xyz)
        cases["cloud_xyz_with_nans/sensor_msgs_py"] = ("cloud in", lambda: pc2.read_points_numpy(
            holed_msg, field_names=("x", "y", "z"), skip_nans=True), holed_xyz)

    for name, (_, function, expected) in cases.items():
        result = function()
        if expected is None:
            result, expected = messages.image_to_numpy(result), nan_depth
        if not np.array_equal(np.asarray(result), expected, equal_nan=True):
            raise AssertionError(f"{name} does not produce the expected values")

    timings = time_round_robin({name: function for name, (_, function, _) in cases.items()}, runs=args.runs)
    results = {name: {"direction": direction, **timings[name]} for name, (direction, _, _) in cases.items()}
    ratios = {}
    for name in results:
        conversion, library = name.split("/")
        if library != "ours":
            ratios[name] = results[name]["median_ms"] / results[f"{conversion}/ours"]["median_ms"]

    # Offline evaluation reads bags with rosbags: do the converters take its message classes?
    from depth_completion_ros.data.rosbag import typestore_for

    bag_image, bag_cloud = build_messages(typestore_for("jazzy").types, rgb, cloud)
    rosbags_messages = {
        "ours (image, cloud)": " / ".join((_accepts(lambda: messages.rgb_from_image(bag_image), rgb),
                                           _accepts(lambda: messages.pointcloud2_to_xyz(bag_cloud)[0], xyz))),
    }
    if bridge:
        rosbags_messages["cv_bridge imgmsg_to_cv2"] = _accepts(lambda: bridge.imgmsg_to_cv2(bag_image, "rgb8"), rgb)
    if pc2:
        rosbags_messages["sensor_msgs_py read_points_numpy"] = _accepts(
            lambda: pc2.read_points_numpy(bag_cloud, field_names=("x", "y", "z")), xyz)

    print(f"message conversion at {width}x{height} and {args.points} points, median of {args.runs} runs "
          "(ratio: the library's time over the package's)")
    for name, figures in results.items():
        ratio = f"  {ratios[name]:6.2f} x ours" if name in ratios else ""
        print(f"  {figures['direction']:<9} {name:<42} {figures['median_ms']:8.3f} ms{ratio}")
    not_timed = {library: reason for library, reason in (("cv_bridge", bridge_missing),
                                                         ("sensor_msgs_py", pc2_missing)) if reason}
    for library, reason in not_timed.items():
        print(f"  {library} not timed: {reason}")
    print("  rosbags message classes accepted:")
    for converter, verdict in rosbags_messages.items():
        print(f"    {converter:<34} {verdict}")

    command = "python benchmarks/bench_message_conversion.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    write_json(args.json, {
        "benchmark": "message_conversion", "command": command.strip(), "image": [width, height],
        "image_bytes": len(image_msg.data), "points": args.points, "cloud_bytes": len(cloud_msg.data),
        "nan_fraction": args.nan_fraction, "runs": args.runs,
        "results": results, "ratio_to_ours": ratios, "rosbags_messages": rosbags_messages,
        "not_timed": not_timed,
        "library_versions": _library_versions(bridge_module), "machine": describe_machine()})
    return 0


def _library_versions(bridge_module) -> dict:
    versions = {}
    try:
        import cv2

        versions["opencv"] = cv2.__version__
    except ImportError:
        pass
    try:
        from ament_index_python.packages import get_package_share_directory
        import xml.etree.ElementTree as ElementTree

        for package in ("cv_bridge", "sensor_msgs_py", "rclpy"):
            try:
                manifest = Path(get_package_share_directory(package)) / "package.xml"
                versions[package] = ElementTree.parse(manifest).getroot().findtext("version")
            except Exception:  # noqa: BLE001 - a missing package has no version to report
                continue
    except ImportError:
        pass
    return versions


if __name__ == "__main__":
    sys.exit(main())
