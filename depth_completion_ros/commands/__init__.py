"""dcros sub-commands; see depth_completion_ros.cli."""
