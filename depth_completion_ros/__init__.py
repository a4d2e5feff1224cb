"""depth_completion_ros: LiDAR + camera depth completion for ROS 2 with a ROS-free core."""

__version__ = "0.1.0"
