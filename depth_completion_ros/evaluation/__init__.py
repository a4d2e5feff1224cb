"""Evaluation: KITTI depth-completion metrics, KITTI-folder and rosbag evaluation, reports."""
