"""Which ROS 2 this Python environment has, and tf2's one message built into it where it is missing.

Two tiers run the node:
- a ROS 2 distribution (apt or source, `source /opt/ros/<distro>/setup.bash`): rclpy, tf2_ros, message_filters,
  launch, rosbag2 and the `ros2` command;
- ROS 2 Jazzy's core from the Python package registry (`pip install depth_completion_ros[ros]`): rclpy with
  Fast DDS and the core message packages, and nothing else (no tf2_ros, tf2_msgs, message_filters,
  diagnostic_updater, launch or rosbag2).

On the registry tier the node still listens to /tf and /tf_static where `tf2_msgs/msg/TFMessage` can be
imported. That package is not published as a wheel, but its message is one line, and the registry does
publish the rosidl generators and ament_cmake: `build_tf2_msgs` generates and compiles the package from the
definition below with CMake and the C compiler, and installs it into the environment's own prefix, where the
registry's rclpy finds its libraries (the wheels' start-up hook puts `<prefix>/lib` on the library path).
The type is the same as ROS 2's `tf2_msgs/msg/TFMessage` (same name, same fields, so the same type hash):
nodes of a full ROS 2 installation exchange /tf with it.
"""
from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

TF2_MSGS = "tf2_msgs"
# tf2_msgs/msg/TFMessage as ROS 2 defines it (geometry2's tf2_msgs): the only tf message the node reads.
TF_MESSAGE_DEFINITION = "geometry_msgs/TransformStamped[] transforms\n"
PACKAGE_XML = """<?xml version="1.0"?>
<package format="3">
  <name>tf2_msgs</name>
  <version>0.36.0</version>
  <description>tf2_msgs/msg/TFMessage, built by depth_completion_ros for a ROS 2 from the Python package
    registry (which does not publish tf2_msgs)</description>
  <maintainer email="depth_completion_ros@users.noreply.github.com">depth_completion_ros</maintainer>
  <license>BSD-3-Clause</license>
  <buildtool_depend>ament_cmake</buildtool_depend>
  <buildtool_depend>rosidl_default_generators</buildtool_depend>
  <depend>geometry_msgs</depend>
  <exec_depend>rosidl_default_runtime</exec_depend>
  <member_of_group>rosidl_interface_packages</member_of_group>
  <export><build_type>ament_cmake</build_type></export>
</package>
"""
# The registry's message packages export CMake targets whose include directories name the Python of the
# machine that built the wheels (/opt/python/cp3xx-.../include, .../numpy/_core/include): every such path
# that does not exist here is replaced by this interpreter's headers and NumPy's, found by rosidl_generator_py.
CMAKE_LISTS = """cmake_minimum_required(VERSION 3.14)
project(tf2_msgs)
find_package(ament_cmake REQUIRED)
find_package(geometry_msgs REQUIRED)
find_package(rosidl_default_generators REQUIRED)
rosidl_generate_interfaces(${PROJECT_NAME} "msg/TFMessage.msg" DEPENDENCIES geometry_msgs)
get_directory_property(imported_targets IMPORTED_TARGETS)
foreach(target ${imported_targets})
  get_target_property(include_dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
  if(include_dirs)
    set(kept "")
    foreach(dir ${include_dirs})
      if(EXISTS "${dir}" OR dir MATCHES "^\\\\$<")
        list(APPEND kept "${dir}")
      else()
        list(APPEND kept ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
      endif()
    endforeach()
    list(REMOVE_DUPLICATES kept)
    set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${kept}")
  endif()
endforeach()
ament_package()
"""


class InterfaceBuildError(RuntimeError):
    """Building tf2_msgs failed; the message names the step and ends with the tool's output."""


def has_module(name: str) -> bool:
    """Whether `name` can be imported here (without importing it)."""
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


@dataclass(frozen=True)
class RosEnvironment:
    """What ROS 2 this interpreter can use. `tier`: "distribution" (a sourced ROS 2 with its `ros2` command),
    "registry" (rclpy without a distribution: the Python package registry's wheels) or "none"."""

    rclpy: bool
    distribution: str | None  # ROS_DISTRO of a sourced distribution
    ros2_command: bool
    tf2_ros: bool
    tf2_msgs: bool
    message_filters: bool
    diagnostic_updater: bool

    @property
    def tier(self) -> str:
        if not self.rclpy:
            return "none"
        return "distribution" if self.ros2_command and self.distribution else "registry"

    def describe(self) -> str:
        present = [name for name in ("tf2_ros", "tf2_msgs", "message_filters", "diagnostic_updater")
                   if getattr(self, name)]
        absent = [name for name in ("tf2_ros", "tf2_msgs", "message_filters", "diagnostic_updater")
                  if not getattr(self, name)]
        where = {"distribution": f"a sourced ROS 2 {self.distribution} distribution",
                 "registry": "rclpy from the Python package registry (no ROS 2 distribution sourced)",
                 "none": "no rclpy"}[self.tier]
        return (f"ROS 2 tier: {self.tier} ({where}); present: {', '.join(present) or 'none'}; "
                f"absent: {', '.join(absent) or 'none'}")


def ros_environment() -> RosEnvironment:
    return RosEnvironment(
        rclpy=has_module("rclpy"), distribution=os.environ.get("ROS_DISTRO") or None,
        ros2_command=shutil.which("ros2") is not None, tf2_ros=has_module("tf2_ros"),
        tf2_msgs=has_module(TF2_MSGS), message_filters=has_module("message_filters"),
        diagnostic_updater=has_module("diagnostic_updater"))


def write_tf2_msgs_package(folder: Path) -> Path:
    """The tf2_msgs source package (package.xml, CMakeLists.txt, msg/TFMessage.msg) in `folder`."""
    folder = Path(folder)
    (folder / "msg").mkdir(parents=True, exist_ok=True)
    (folder / "package.xml").write_text(PACKAGE_XML)
    (folder / "CMakeLists.txt").write_text(CMAKE_LISTS)
    (folder / "msg" / "TFMessage.msg").write_text(TF_MESSAGE_DEFINITION)
    return folder


def _cmake() -> str:
    """The CMake beside this interpreter (the `cmake` wheel of the ros extra) or on PATH."""
    beside = Path(sys.executable).parent / "cmake"
    found = str(beside) if beside.exists() else shutil.which("cmake")
    if found is None:
        raise InterfaceBuildError("building tf2_msgs needs CMake: pip install cmake (or install your system's)")
    return found


def _run(step: str, command: list[str], env: dict[str, str], log) -> None:
    log(f"{step}: {' '.join(command)}")
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        output = (done.stdout + done.stderr)[-6000:]
        raise InterfaceBuildError(f"building tf2_msgs failed at the {step} step (exit {done.returncode}):\n{output}")


def build_tf2_msgs(prefix: str | Path = sys.prefix, ros_prefix: str | Path = sys.prefix, jobs: int | None = None,
                   log=print) -> float:
    """Generate, compile and install tf2_msgs into `prefix` (default: this environment), with the ROS 2 of
    `ros_prefix` (default: this environment's, where the `ros` extra put the registry's rosidl generators,
    ament_cmake and message packages). Returns the seconds it took. Needs CMake and a C/C++ compiler; raises
    InterfaceBuildError naming the failed step. Installed into this environment, it is checked by importing it."""
    started = time.monotonic()
    prefix, ros_prefix = Path(prefix).resolve(), Path(ros_prefix).resolve()
    env = dict(os.environ)
    # ament_cmake finds the type supports through the ament index of the prefix the wheels installed into.
    env["AMENT_PREFIX_PATH"] = os.pathsep.join(p for p in (str(ros_prefix), env.get("AMENT_PREFIX_PATH")) if p)
    env["PATH"] = os.pathsep.join((str(Path(sys.executable).parent), env.get("PATH", "")))
    with tempfile.TemporaryDirectory(prefix="dcros_tf2_msgs_") as work:
        source = write_tf2_msgs_package(Path(work) / "src")
        build = Path(work) / "build"
        cmake = _cmake()
        _run("configure", [cmake, "-S", str(source), "-B", str(build), f"-DCMAKE_PREFIX_PATH={ros_prefix}",
                           f"-DCMAKE_INSTALL_PREFIX={prefix}", f"-DPython3_EXECUTABLE={sys.executable}",
                           "-DBUILD_TESTING=OFF", "-DCMAKE_BUILD_TYPE=Release",
                           # CMake 4 refuses the 3.5-era minimum versions some ament modules declare
                           "-DCMAKE_POLICY_VERSION_MINIMUM=3.5"], env, log)
        _run("build", [cmake, "--build", str(build), "--parallel", str(jobs or os.cpu_count() or 1)], env, log)
        _run("install", [cmake, "--install", str(build)], env, log)
    if prefix != Path(sys.prefix).resolve():
        return time.monotonic() - started
    check = subprocess.run([sys.executable, "-c", "from tf2_msgs.msg import TFMessage; TFMessage()"],
                           capture_output=True, text=True)
    if check.returncode != 0:
        raise InterfaceBuildError(f"tf2_msgs was installed into {prefix} but does not import:\n{check.stderr[-3000:]}")
    return time.monotonic() - started
