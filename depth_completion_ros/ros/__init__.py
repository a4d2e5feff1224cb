"""The ROS 2 edge: node, conversions that need rclpy, launch glue. Imports rclpy lazily."""
