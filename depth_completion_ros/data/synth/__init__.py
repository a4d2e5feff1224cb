"""A deterministic procedural driving world written in the real KITTI formats.

`generate_dataset(out_dir, drives, frames, seed)` ray casts a street scene (road, kerbs, sidewalks,
buildings, parked and moving cars, poles, trees, pedestrians) with KITTI's camera 02 and a Velodyne
HDL-64E model, and writes raw drives, depth-completion folders, the cropped validation selection and a
manifest. `summarize_dataset(out_dir)` reads the statistics back from the files.
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
