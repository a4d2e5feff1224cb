"""`dcros ros-setup`: say which ROS 2 this environment has and build tf2_msgs where only the registry's ROS 2 is."""
from __future__ import annotations

import argparse

HELP = ("report which ROS 2 this Python environment has (a distribution, or the Python package registry's wheels) "
        "and build tf2_msgs into it where it is missing, so that the node hears /tf and /tf_static")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--check", action="store_true",
                        help="only report; exit status 1 where the node would run without tf (no tf2_ros, no tf2_msgs)")
    parser.add_argument("--force", action="store_true", help="build tf2_msgs again even where it imports")


def run(args: argparse.Namespace) -> int:
    from depth_completion_ros.ros.interfaces import InterfaceBuildError, build_tf2_msgs, ros_environment

    environment = ros_environment()
    print(environment.describe())
    if not environment.rclpy:
        print("the node needs rclpy: source a ROS 2 distribution, or pip install 'depth_completion_ros[ros]'")
        return 1
    has_tf = environment.tf2_ros or environment.tf2_msgs
    if args.check or (has_tf and not args.force):
        print("tf: " + ("tf2_ros" if environment.tf2_ros else "the node's own /tf listener (tf2_msgs)" if has_tf
                        else "none: the node uses lidar_to_camera or calibration_file; run dcros ros-setup to build "
                             "tf2_msgs"))
        return 0 if has_tf else 1
    if environment.tier == "distribution":
        print("a sourced ROS 2 distribution without tf2_msgs: install it with your distribution "
              f"(e.g. apt install ros-{environment.distribution}-tf2-msgs); nothing built")
        return 1
    try:
        seconds = build_tf2_msgs()
    except InterfaceBuildError as error:
        print(f"dcros ros-setup: error: {error}")
        return 1
    print(f"built and installed tf2_msgs (tf2_msgs/msg/TFMessage) into this environment in {seconds:.1f} s")
    return 0
