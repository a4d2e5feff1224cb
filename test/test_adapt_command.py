"""`dcros adapt` on small bags: refused without ego motion, adapts, resumes, and its checkpoint runs anywhere.

The bags are written here with the package's bag writer (a real rosbag2 that `ros2 bag play` plays): a
64x160 camera and a 16-beam LiDAR driving down a street of walls and boxes (exact returns, see
test_adaptation_targets.sweep), the LiDAR -> camera transform on /tf_static and the vehicle's motion as
odom -> base_link on /tf.
"""
import json

import numpy as np
import pytest

from depth_completion_ros.adaptation.recordings import EgoMotionError
from depth_completion_ros.cli import main as dcros
from depth_completion_ros.data import messages
from depth_completion_ros.data.rosbag import open_bag_writer
from depth_completion_ros.geometry import invert_transform, make_transform

from test_adaptation_targets import CAMERA, LIDAR_TO_CAMERA, sweep

pytest.importorskip("torch")

FRAMES = 8
SPEED = 0.8  # m per frame (10 Hz)
START_NS = 1_700_000_000_000_000_000


def _image(index: int) -> np.ndarray:
    """A textured frame (the texture moves with the scene a little, as a camera's would)."""
    rows, cols = np.mgrid[0:CAMERA.height, 0:CAMERA.width]
    pattern = (np.sin(cols * 0.3 + index * 0.2) + np.cos(rows * 0.4)) * 60 + 120
    return np.clip(np.stack([pattern, pattern * 0.8, 255 - pattern], -1), 0, 255).astype(np.uint8)


def write_bag(path, ego_motion: str = "moving", frames: int = FRAMES) -> None:
    """ego_motion: "moving" (odom -> base_link per frame), "unrelated" (/tf moves another robot, not this
    vehicle) or "none" (no /tf)."""
    boxes = [(12.0, -1.0, 1.5, -1.0, 0.8), (20.0, 2.0, 4.0, -1.5, 1.0), (26.0, -5.0, -2.5, -1.2, 2.0)]
    with open_bag_writer(path, distro="jazzy") as bag:
        types = bag.types
        bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
        if ego_motion != "none":
            bag.add_topic("/tf", "tf2_msgs/msg/TFMessage")
        bag.add_topic("/camera/image_raw", "sensor_msgs/msg/Image")
        bag.add_topic("/camera/camera_info", "sensor_msgs/msg/CameraInfo")
        bag.add_topic("/lidar/points", "sensor_msgs/msg/PointCloud2")
        static = [
            messages.build_transform_stamped(types, messages.build_header(types, START_NS, "base_link"), "lidar",
                                             make_transform(np.eye(3), (0.0, 0.0, 1.7))),
            messages.build_transform_stamped(types, messages.build_header(types, START_NS, "base_link"), "camera",
                                             make_transform(np.eye(3), (0.0, 0.0, 1.7))
                                             @ invert_transform(LIDAR_TO_CAMERA)),
        ]
        bag.write("/tf_static", START_NS, messages.make_message(types["tf2_msgs/msg/TFMessage"], transforms=static))
        for index in range(frames):
            stamp = START_NS + index * 100_000_000
            x = index * SPEED
            if ego_motion != "none":
                child = "base_link" if ego_motion == "moving" else "other_robot"
                odom = messages.build_transform_stamped(types, messages.build_header(types, stamp, "odom"),
                                                        child, make_transform(np.eye(3), (x, 0.0, 0.0)))
                bag.write("/tf", stamp, messages.make_message(types["tf2_msgs/msg/TFMessage"], transforms=[odom]))
            header = messages.build_header(types, stamp, "camera")
            bag.write("/camera/image_raw", stamp, messages.build_image(types["sensor_msgs/msg/Image"], header,
                                                                       _image(index), "rgb8"))
            bag.write("/camera/camera_info", stamp, messages.build_camera_info(types, header, CAMERA))
            points = sweep(index * SPEED, [(b[0], *b[1:]) for b in boxes], beams=16, wall_x=34.0)
            cloud_header = messages.build_header(types, stamp + 300_000, "lidar")
            bag.write("/lidar/points", stamp + 300_000, messages.build_pointcloud2(types, cloud_header, points))


@pytest.mark.parametrize("ego_motion, expected", [
    ("none", "has no /tf topic"),
    ("unrelated", "no /tf transform moves the LiDAR's frame 'lidar' (its tree: lidar -> base_link)"),
])
def test_a_bag_without_ego_motion_is_refused_before_anything_runs(tmp_path, capsys, ego_motion, expected):
    bag = tmp_path / "drive"
    write_bag(bag, ego_motion=ego_motion, frames=3)
    out = tmp_path / "out"
    assert dcros(["adapt", str(bag), "--out", str(out), "--no-progress"]) == 2
    error = capsys.readouterr().err
    assert expected in error and "odom -> base_link" in error
    if ego_motion == "unrelated":
        assert "moving transforms in the bag: odom -> other_robot" in error
    assert not out.exists()  # nothing was written, no training started


def test_adapt_resume_and_use_the_adapted_checkpoint(tmp_path):
    from depth_completion_ros.adaptation.run import AdaptOptions, TrainingOptions, adapt
    from depth_completion_ros.data.image_io import read_depth_png
    from depth_completion_ros.model_zoo import resolve_engine
    from depth_completion_ros.models.checkpoint import load_checkpoint
    from depth_completion_ros.pipeline import FrameProcessor

    bag = tmp_path / "drive"
    write_bag(bag)
    out = tmp_path / "adapted"
    options = AdaptOptions(training=TrainingOptions(epochs=2, batch_size=2, workers=0), progress=False)
    first = adapt([bag], out, options, max_epochs=1)
    assert first["epochs_done"] == 1 and not first["finished"]
    data = json.loads((out / "data" / "adaptation_data.json").read_text())
    assert data["train_frames"] == 6 and data["val_frames"] == 2  # the last 20 % of the frames validate
    record = data["recordings"][0]
    assert record["fixed_frame"] == "odom" and record["target_density"] > record["sweep_density"]
    # The validation ground truth is the held-out returns only, none of them in the input.
    drive = record["drive"]
    val_truth = sorted((out / "data" / "data_depth_annotated" / "val" / drive).rglob("*.png"))
    val_input = sorted((out / "data" / "data_depth_velodyne" / "val" / drive).rglob("*.png"))
    truth, network_input = read_depth_png(val_truth[0]), read_depth_png(val_input[0])
    assert np.count_nonzero(truth) > 0 and not np.any((truth > 0) & (network_input > 0))
    png_mtime = val_truth[0].stat().st_mtime_ns

    second = adapt([bag], out, options, resume=True)
    assert second["epochs_done"] == 2 and second["finished"]
    assert val_truth[0].stat().st_mtime_ns == png_mtime  # the data set was reused
    log = (out / "train" / "log.csv").read_text().splitlines()
    expected_rows = [["0", "0", "start"], ["1", "3", "all"], ["2", "6", "all"]]  # 6 frames, batches of 2
    assert [row.split(",")[:3] for row in log[1:]] == expected_rows
    # Never worse than the start on the validation hold-out error.
    assert second["hold_out_after"]["mae_mm"] <= second["hold_out_before"]["mae_mm"]
    card = (out / "adapted.md").read_text()
    assert "starting model" in card and "nearest fill (no learning)" in card
    assert set(second["hold_out_fills"]) == {"nearest fill", "morphological fill"}

    checkpoint = load_checkpoint(out / "adapted.pt")  # weights_only
    assert checkpoint.metadata["adaptation"]["recordings"][0]["source"] == str(bag)
    assert sorted(p.name for p in out.glob("adapted*.onnx")) == ["adapted.fused.onnx", "adapted.onnx"]
    engine = resolve_engine(model=str(out / "adapted.pt"), device="cpu")
    assert str(engine.backend) == "onnx"  # through its ONNX files: a robot without PyTorch runs it
    processor = FrameProcessor(engine, camera=CAMERA, lidar_to_camera=LIDAR_TO_CAMERA)
    result = processor.process(_image(0), sweep(0.0, [], beams=16, wall_x=34.0))
    assert result.dense.shape == (CAMERA.height, CAMERA.width) and np.isfinite(result.dense).all()


def test_a_kitti_raw_drive_without_oxts_is_refused(tmp_path):
    drive = tmp_path / "2011_01_01" / "2011_01_01_drive_0001_sync"
    (drive / "image_02" / "data").mkdir(parents=True)
    with pytest.raises(EgoMotionError, match="motion is unknown"):
        from depth_completion_ros.adaptation.run import check_recordings

        check_recordings([drive], {})
