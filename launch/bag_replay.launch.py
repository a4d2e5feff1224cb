"""Replay a bag (e.g. from `dcros kitti2bag`) through the depth completion node, with simulated time.

    ros2 launch depth_completion_ros bag_replay.launch.py bag:=/path/to/bag rate:=0.5 rviz:=true

Starts the depth completion node (depth_completion.launch.py with use_sim_time:=true), depth_image_proc's
PointCloudXyzNode (depth/image + depth/camera_info -> depth/points) in a component container unless
point_cloud:=false, RViz when rviz:=true, and `ros2 bag play --clock` once the node logs that it is ready
(after its warm-up), so that no frame of the bag reaches a node that is still loading. Every node uses the
bag's /clock. Play at a rate the node keeps up with (rate:=...) to have every frame answered.
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, ExecuteProcess, IncludeLaunchDescription, RegisterEventHandler
from launch.conditions import IfCondition
from launch.event_handlers import OnProcessIO
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import ComposableNodeContainer
from launch_ros.descriptions import ComposableNode
from launch_ros.substitutions import FindPackageShare

PACKAGE = "depth_completion_ros"
READY_MESSAGE = b"[depth_completion]: ready for frames"  # depth_completion_ros.ros.node.READY_MESSAGE


def _play_once_ready(play: ExecuteProcess) -> RegisterEventHandler:
    """Starts `play` on the first output line in which the node says it is ready."""
    started = []

    def on_output(event):
        if not started and READY_MESSAGE in event.text:
            started.append(True)
            return [play]
        return None

    return RegisterEventHandler(OnProcessIO(on_stdout=on_output, on_stderr=on_output))


def generate_launch_description():
    """Arguments: bag (required), rate, point_cloud, model, device, params_file, rviz, image, camera_info,
    points."""
    share = FindPackageShare(PACKAGE)
    forwarded = ("model", "device", "params_file", "rviz", "image", "camera_info", "points")
    depth_completion = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(PathJoinSubstitution([share, "launch", "depth_completion.launch.py"])),
        launch_arguments=[("use_sim_time", "true")] + [(name, LaunchConfiguration(name)) for name in forwarded],
    )
    point_cloud = ComposableNodeContainer(
        name="depth_image_proc_container",
        namespace="",
        package="rclcpp_components",
        executable="component_container",
        composable_node_descriptions=[ComposableNode(
            package="depth_image_proc",
            plugin="depth_image_proc::PointCloudXyzNode",
            name="point_cloud_xyz",
            remappings=[("image_rect", "depth/image"), ("camera_info", "depth/camera_info"),
                        ("points", "depth/points")],
            parameters=[{"use_sim_time": True}],
        )],
        parameters=[{"use_sim_time": True}],
        output="screen",
        condition=IfCondition(LaunchConfiguration("point_cloud")),
    )
    play = ExecuteProcess(
        cmd=["ros2", "bag", "play", LaunchConfiguration("bag"), "--clock", "--rate", LaunchConfiguration("rate"),
             "--disable-keyboard-controls"],
        output="screen",
    )
    return LaunchDescription([
        DeclareLaunchArgument("bag", description="path of the bag to replay (folder with metadata.yaml)"),
        DeclareLaunchArgument("rate", default_value="1.0", description="playback rate (ros2 bag play --rate)"),
        DeclareLaunchArgument("point_cloud", default_value="true",
                              description="turn depth/image into depth/points with depth_image_proc"),
        DeclareLaunchArgument("model", default_value="", description="see depth_completion.launch.py"),
        DeclareLaunchArgument("device", default_value="", description="see depth_completion.launch.py"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([share, "config", "depth_completion.yaml"]),
                              description="node parameter file"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with the package's view"),
        DeclareLaunchArgument("image", default_value="/kitti/camera_color_left/image_raw",
                              description="camera image topic in the bag"),
        DeclareLaunchArgument("camera_info", default_value="/kitti/camera_color_left/camera_info",
                              description="camera info topic in the bag"),
        DeclareLaunchArgument("points", default_value="/kitti/velo/pointcloud",
                              description="LiDAR point cloud topic in the bag"),
        depth_completion,
        point_cloud,
        _play_once_ready(play),
    ])
