"""A deterministic procedural driving world written in the real KITTI formats.

`generate_dataset(out_dir, drives, frames, seed)` ray casts a street scene (road, kerbs, sidewalks,
buildings, parked and moving cars, poles, trees, pedestrians) with KITTI's four rectified cameras and a
Velodyne HDL-64E model, derives the OXTS GPS/IMU packets from the ego motion, and writes complete raw
drives, depth-completion folders (camera 02), the cropped validation selection and a manifest.
`summarize_dataset(out_dir)` reads the statistics back from the files.
"""
from depth_completion_ros.data.synth.writer import (
    DATE,
    GENERATOR_VERSION,
    drive_name,
    format_summary,
    format_timestamp,
    generate_dataset,
    summarize_dataset,
)

__all__ = [
    "DATE",
    "GENERATOR_VERSION",
    "drive_name",
    "format_summary",
    "format_timestamp",
    "generate_dataset",
    "summarize_dataset",
]
