"""Launch the depth completion node (and RViz when rviz:=true).

    ros2 launch depth_completion_ros depth_completion.launch.py model:=/path/to/checkpoint.pt rviz:=true

Inputs default to the kitti2bag topic layout; remap them with image:=, camera_info:=, points:=.
model and device override params_file only when given (empty = take the file's value).
"""
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration, PathJoinSubstitution
from launch_ros.actions import Node
from launch_ros.substitutions import FindPackageShare

PACKAGE = "depth_completion_ros"


def _depth_completion_node(context):
    """The node, with model/device overrides only for the arguments actually given."""
    use_sim_time = LaunchConfiguration("use_sim_time").perform(context).strip().lower() in ("true", "1", "yes")
    overrides = {"use_sim_time": use_sim_time}
    for name in ("model", "device"):
        value = LaunchConfiguration(name).perform(context).strip()
        if value:
            overrides[name] = value  # a str stays a str: "1" is a model name, not an integer
    return [Node(
        package=PACKAGE,
        executable="depth_completion_node",
        name="depth_completion",
        output="screen",
        emulate_tty=True,
        parameters=[LaunchConfiguration("params_file").perform(context), overrides],
        remappings=[
            ("image", LaunchConfiguration("image").perform(context)),
            ("camera_info", LaunchConfiguration("camera_info").perform(context)),
            ("points", LaunchConfiguration("points").perform(context)),
        ],
    )]


def generate_launch_description():
    """Arguments: model, device, params_file, use_sim_time, rviz, image, camera_info, points."""
    share = FindPackageShare(PACKAGE)
    return LaunchDescription([
        DeclareLaunchArgument("model", default_value="",
                              description="'default', a registered model name or a checkpoint path "
                                          "(empty: the params_file value)"),
        DeclareLaunchArgument("device", default_value="",
                              description="auto | cuda | cpu (empty: the params_file value)"),
        DeclareLaunchArgument("params_file",
                              default_value=PathJoinSubstitution([share, "config", "depth_completion.yaml"]),
                              description="node parameter file"),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="use /clock (true when replaying a bag with --clock)"),
        DeclareLaunchArgument("rviz", default_value="false", description="start RViz with the package's view"),
        DeclareLaunchArgument("image", default_value="/kitti/camera_color_left/image_raw",
                              description="camera image topic"),
        DeclareLaunchArgument("camera_info", default_value="/kitti/camera_color_left/camera_info",
                              description="camera info topic"),
        DeclareLaunchArgument("points", default_value="/kitti/velo/pointcloud",
                              description="LiDAR point cloud topic"),
        OpaqueFunction(function=_depth_completion_node),
        Node(
            package="rviz2",
            executable="rviz2",
            name="rviz2",
            arguments=["-d", PathJoinSubstitution([share, "config", "depth_completion.rviz"])],
            parameters=[{"use_sim_time": LaunchConfiguration("use_sim_time")}],
            condition=IfCondition(LaunchConfiguration("rviz")),
            output="screen",
        ),
    ])
