"""Data: KITTI layout readers and writers, the synthetic world, rosbag2 and message conversion."""
