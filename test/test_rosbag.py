"""rosbag2 writing/reading through rosbags, and `dcros kitti2bag` on the synthetic KITTI world."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from rosbags.rosbag1 import Writer as Rosbag1Writer
from rosbags.typesys import Stores, get_typestore

from depth_completion_ros.data import messages as m
from depth_completion_ros.data import rosbag
from depth_completion_ros.geometry import PinholeCamera, make_transform, quaternion_to_rotation

CAMERA = PinholeCamera(width=8, height=6, fx=7.0, fy=7.5, cx=3.5, cy=2.5)
T0 = 1_317_000_000_000_000_000


def metadata(bag_path: Path) -> dict:
    return yaml.safe_load((bag_path / "metadata.yaml").read_text())["rosbag2_bagfile_information"]


def topic_metadata(info: dict, topic: str) -> dict:
    return next(t["topic_metadata"] for t in info["topics_with_message_count"] if t["topic_metadata"]["name"] == topic)


def offered_qos(topic_info: dict) -> list[dict]:
    """Version 8 stores the profiles as a YAML string, version 9 as a list."""
    profiles = topic_info["offered_qos_profiles"]
    return yaml.safe_load(profiles) or [] if isinstance(profiles, str) else profiles


def write_small_bag(path: Path, distro: str, storage: str | None = None):
    """Two images written out of time order, one /tf_static; returns the images by stamp."""
    rng = np.random.default_rng(0)
    images = {T0 + 200_000_000: rng.integers(0, 256, (6, 8, 3), dtype=np.uint8),
              T0 + 100_000_000: rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)}
    with rosbag.open_bag_writer(path, distro=distro, storage=storage) as bag:
        types = bag.types
        bag.add_topic("/tf_static", "tf2_msgs/msg/TFMessage", latched=True)
        bag.add_topic("/camera/image", "sensor_msgs/msg/Image")
        bag.add_topic("/camera/info", "sensor_msgs/msg/CameraInfo")
        transform = m.build_transform_stamped(types, m.build_header(types, T0, "base_link"), "camera", np.eye(4))
        bag.write("/tf_static", T0, types["tf2_msgs/msg/TFMessage"](transforms=[transform]))
        for stamp, image in images.items():
            header = m.build_header(types, stamp, "camera")
            bag.write("/camera/image", stamp, m.build_image(types["sensor_msgs/msg/Image"], header, image, "rgb8"))
            bag.write("/camera/info", stamp, m.build_camera_info(types, header, CAMERA))
    assert bag.counts == {"/tf_static": 1, "/camera/image": 2, "/camera/info": 2}
    return images


@pytest.mark.parametrize(
    "distro, storage, version, identifier, durability",
    [("humble", None, 8, "sqlite3", 1), ("jazzy", None, 9, "mcap", "transient_local"),
     ("humble", "mcap", 8, "mcap", 1), ("jazzy", "sqlite3", 9, "sqlite3", "transient_local")],
)
def test_writer_version_storage_and_latched_qos(tmp_path, distro, storage, version, identifier, durability):
    bag_path = tmp_path / "bag"
    images = write_small_bag(bag_path, distro, storage)
    info = metadata(bag_path)
    assert info["version"] == version and info["storage_identifier"] == identifier
    assert info["message_count"] == 5
    (tf_qos,) = offered_qos(topic_metadata(info, "/tf_static"))
    assert tf_qos["durability"] == durability  # 1 is TRANSIENT_LOCAL in version 8's numeric form
    assert offered_qos(topic_metadata(info, "/camera/image")) == []

    # An independent read through rosbags' AnyReader with the definitions stored in the bag.
    with AnyReader([bag_path]) as reader:
        connections = [c for c in reader.connections if c.topic == "/camera/image"]
        read = {stamp: reader.deserialize(raw, c.msgtype) for c, stamp, raw in reader.messages(connections)}
    assert sorted(read) == sorted(images)
    for stamp, msg in read.items():
        np.testing.assert_array_equal(m.image_to_numpy(msg), images[stamp])
        assert m.stamp_to_ns(msg.header.stamp) == stamp


def test_read_bag_yields_deserialised_messages_in_time_order(tmp_path):
    bag_path = tmp_path / "bag"
    images = write_small_bag(bag_path, "jazzy")
    everything = list(rosbag.read_bag(bag_path))
    stamps = [item.stamp_ns for item in everything]
    assert stamps == sorted(stamps) and len(everything) == 5
    assert everything[0].topic == "/tf_static" and everything[0].msgtype == "tf2_msgs/msg/TFMessage"

    only_images = list(rosbag.read_bag(bag_path, topics=["/camera/image"]))
    assert [item.stamp_ns for item in only_images] == sorted(images)
    for item in only_images:
        np.testing.assert_array_equal(m.image_to_numpy(item.msg), images[item.stamp_ns])
    info = next(rosbag.read_bag(bag_path, topics=["/camera/info"])).msg
    assert m.camera_from_camera_info(info) == CAMERA

    assert rosbag.bag_topics(bag_path) == {
        "/tf_static": ("tf2_msgs/msg/TFMessage", 1),
        "/camera/image": ("sensor_msgs/msg/Image", 2),
        "/camera/info": ("sensor_msgs/msg/CameraInfo", 2),
    }


def test_read_bag_reads_ros1_bags(tmp_path):
    noetic = get_typestore(Stores.ROS1_NOETIC)
    image = np.arange(24, dtype=np.uint16).reshape(4, 6)
    header = noetic.types["std_msgs/msg/Header"](
        seq=0, stamp=noetic.types["builtin_interfaces/msg/Time"](sec=5, nanosec=7), frame_id="camera")
    msg = m.build_image(noetic.types["sensor_msgs/msg/Image"], header, image, "16UC1")
    bag_path = tmp_path / "old.bag"
    with Rosbag1Writer(bag_path) as writer:
        connection = writer.add_connection("/depth", "sensor_msgs/msg/Image", typestore=noetic)
        writer.write(connection, 5_000_000_007, noetic.serialize_ros1(msg, "sensor_msgs/msg/Image"))
    (item,) = list(rosbag.read_bag(bag_path))
    assert (item.topic, item.stamp_ns) == ("/depth", 5_000_000_007)
    np.testing.assert_array_equal(m.image_to_numpy(item.msg), image)


def test_missing_bag_topic_and_empty_bag_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="bag not found: .*nowhere"):
        rosbag.read_bag(tmp_path / "nowhere")
    with pytest.raises(FileNotFoundError, match="bag not found"):
        rosbag.bag_topics(tmp_path / "nowhere")

    bag_path = tmp_path / "bag"
    write_small_bag(bag_path, "humble")
    with pytest.raises(rosbag.BagError, match=r"has no topic /lidar \(topics: /camera/image, /camera/info, "
                                              r"/tf_static\)"):
        rosbag.read_bag(bag_path, topics=["/camera/image", "/lidar"])

    empty = tmp_path / "empty"
    with rosbag.open_bag_writer(empty, distro="humble") as bag:
        bag.add_topic("/camera/image", "sensor_msgs/msg/Image")
    with pytest.raises(rosbag.BagError, match="holds no messages"):
        rosbag.read_bag(empty)

    not_a_bag = tmp_path / "folder"
    not_a_bag.mkdir()
    with pytest.raises(FileNotFoundError, match="is not a rosbag2 folder: it has no metadata.yaml"):
        rosbag.read_bag(not_a_bag)
    broken = tmp_path / "broken.bag"
    broken.write_bytes(b"not a bag")
    with pytest.raises(rosbag.BagError, match="cannot read bag .*broken.bag"):
        rosbag.read_bag(broken)


def test_writer_errors(tmp_path):
    with pytest.raises(rosbag.BagError, match="exists already"):
        rosbag.open_bag_writer(tmp_path, distro="humble")
    with pytest.raises(rosbag.BagError, match="unsupported ROS distro 'noetic'"):
        rosbag.open_bag_writer(tmp_path / "a", distro="noetic")
    with pytest.raises(rosbag.BagError, match="unsupported bag storage 'db3'"):
        rosbag.open_bag_writer(tmp_path / "b", storage="db3")
    with pytest.raises(FileNotFoundError, match="folder for the output bag does not exist"):
        rosbag.open_bag_writer(tmp_path / "missing" / "bag")
    with rosbag.open_bag_writer(tmp_path / "c") as bag:
        with pytest.raises(rosbag.BagError, match="message type 'sensor_msgs/msg/Nothing' is unknown"):
            bag.add_topic("/x", "sensor_msgs/msg/Nothing")
        bag.add_topic("/x", "std_msgs/msg/Header")
        with pytest.raises(rosbag.BagError, match=r"topic /y was not added \(added: /x\)"):
            bag.write("/y", T0, m.build_header(bag.types, T0, "f"))
        with pytest.raises(rosbag.BagError, match="added twice"):
            bag.add_topic("/x", "std_msgs/msg/Header")


def test_kitti_static_transforms_chain_to_lidar_to_camera():
    rotation = quaternion_to_rotation(0.1, -0.7, 0.2, 0.65)
    lidar_to_camera = make_transform(rotation, [0.27, -0.08, -0.06])
    (base_velo, base_camera) = rosbag.kitti_static_transforms(lidar_to_camera)
    assert base_velo[:2] == ("base_link", "velo_link") and base_camera[:2] == ("base_link", "camera_color_left")
    chained = np.linalg.inv(base_camera[2]) @ base_velo[2]
    np.testing.assert_allclose(chained, lidar_to_camera, atol=1e-12)


def test_failure_inside_the_writer_removes_the_partial_bag(tmp_path):
    bag_path = tmp_path / "bag"
    with pytest.raises(RuntimeError):
        with rosbag.open_bag_writer(bag_path) as bag:
            bag.add_topic("/x", "std_msgs/msg/Header")
            bag.write("/x", T0, m.build_header(bag.types, T0, "f"))
            raise RuntimeError("interrupted")
    assert not bag_path.exists()


# ------------------------------------------------------------------------------------------ kitti2bag
DRIVE = "2011_09_26_drive_0001_sync"
FRAMES = 3
GT_FRAMES = (1, 2)  # KITTI leaves the first frames of a drive without ground truth


def write_tiny_kitti_drive(root: Path) -> None:
    """A 3-frame KITTI raw drive in the real file layout (calibration, PNGs, .bin scans, timestamps) with
    ground truth for two frames, small enough for unit tests."""
    from depth_completion_ros.data.image_io import write_depth_png, write_rgb_png
    from depth_completion_ros.geometry import write_kitti_calibration

    rng = np.random.default_rng(11)
    width, height = 24, 10
    K = np.array([[20.0, 0, 11.5], [0, 20.0, 4.5], [0, 0, 1]])
    baseline = np.array([0.06, -0.003, 0.002])  # camera 02 sits beside camera 00
    P_rect_02 = np.hstack([K, (K @ baseline)[:, None]])
    camera_fields = {
        "S": (width, height), "K": K, "D": np.zeros(5), "R": np.eye(3), "T": np.zeros(3),
        "S_rect": (width, height), "R_rect": np.eye(3), "P_rect": np.hstack([K, np.zeros((3, 1))]),
    }
    R_rect_00 = quaternion_to_rotation(0.01, -0.02, 0.005, 1.0)
    velo_to_cam0 = make_transform(np.array([[0, -1, 0], [0, 0, -1], [1, 0, 0]]) @
                                  quaternion_to_rotation(0.002, 0.01, -0.003, 1.0), [-0.004, -0.076, -0.27])
    write_kitti_calibration(root / "kitti_raw" / "2011_09_26",
                            {"00": camera_fields, "02": dict(camera_fields, P_rect=P_rect_02)},
                            R_rect_00, velo_to_cam0)
    drive_dir = root / "kitti_raw" / "2011_09_26" / DRIVE
    gt_dir = root / "data_depth_annotated" / "train" / DRIVE / "proj_depth" / "groundtruth" / "image_02"
    image_lines, velo_lines = [], []
    for frame in range(FRAMES):
        name = f"{frame:010d}"
        write_rgb_png(drive_dir / "image_02" / "data" / f"{name}.png",
                      rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
        scan = np.column_stack([rng.uniform(-30, 30, (50 + frame, 3)), rng.uniform(0, 1, 50 + frame)])
        (drive_dir / "velodyne_points" / "data").mkdir(parents=True, exist_ok=True)
        scan.astype("<f4").tofile(drive_dir / "velodyne_points" / "data" / f"{name}.bin")
        if frame in GT_FRAMES:
            depth = np.where(rng.random((height, width)) < 0.3, rng.uniform(1, 80, (height, width)), 0.0)
            write_depth_png(gt_dir / f"{name}.png", depth)
        image_lines.append(f"2011-09-26 13:02:{25 + frame:02d}.{964389445 + frame * 1000:09d}")
        velo_lines.append(f"2011-09-26 13:02:{25 + frame:02d}.{911111111 + frame:09d}")
    (drive_dir / "image_02" / "timestamps.txt").write_text("\n".join(image_lines) + "\n")
    (drive_dir / "velodyne_points").mkdir(parents=True, exist_ok=True)
    (drive_dir / "velodyne_points" / "timestamps.txt").write_text("\n".join(velo_lines) + "\n")


@pytest.fixture(scope="module")
def tiny_kitti(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("kitti")
    write_tiny_kitti_drive(root)
    return root


def kitti2bag(*args: str) -> int:
    from depth_completion_ros import cli

    return cli.main(["kitti2bag", *map(str, args)])


def read_by_topic(bag_path: Path) -> dict[str, list]:
    """(stamp, message) lists per topic, read independently through AnyReader."""
    result: dict[str, list] = {}
    with AnyReader([bag_path]) as reader:
        for connection, stamp, raw in reader.messages():
            result.setdefault(connection.topic, []).append((stamp, reader.deserialize(raw, connection.msgtype)))
    return result


def check_kitti_bag(bag_path: Path, kitti_root: Path, drive_name: str, frame_ids: list[int]) -> None:
    """Everything in the bag equals what the KITTI files say."""
    from depth_completion_ros.data.image_io import read_depth_png
    from depth_completion_ros.data.kitti import KittiRawDrive

    drive = KittiRawDrive(kitti_root / "kitti_raw", drive_name)
    topics = read_by_topic(bag_path)
    images = topics["/kitti/camera_color_left/image_raw"]
    infos = topics["/kitti/camera_color_left/camera_info"]
    clouds = topics["/kitti/velo/pointcloud"]
    assert len(images) == len(infos) == len(clouds) == len(frame_ids)
    for frame_id, (stamp, image), (_, info), (cloud_stamp, cloud) in zip(frame_ids, images, infos, clouds):
        assert stamp == m.stamp_to_ns(image.header.stamp) == drive.image_timestamps_ns[frame_id]
        assert cloud_stamp == m.stamp_to_ns(cloud.header.stamp) == drive.velodyne_timestamps_ns[frame_id]
        assert image.encoding == "bgr8" and image.header.frame_id == "camera_color_left"
        np.testing.assert_array_equal(m.rgb_from_image(image), drive.read_image(frame_id))
        assert info.header.frame_id == "camera_color_left" and m.stamp_to_ns(info.header.stamp) == stamp
        assert m.camera_from_camera_info(info) == drive.calibration.camera
        assert np.asarray(info.p)[3] == 0  # monocular: Tx = 0, the baseline is in /tf_static
        assert cloud.header.frame_id == "velo_link"
        assert [f.name for f in cloud.fields] == ["x", "y", "z", "i"]
        np.testing.assert_array_equal(m.pointcloud2_to_array(cloud, drop_nonfinite=False),
                                      drive.read_velodyne(frame_id))

    gt_frames = [f for f in frame_ids if drive.annotation_path(kitti_root, f) is not None]
    gts = topics.get("/kitti/camera_color_left/depth_gt", [])
    assert len(gts) == len(gt_frames)
    for frame_id, (stamp, gt) in zip(gt_frames, gts):
        assert stamp == drive.image_timestamps_ns[frame_id] and gt.header.frame_id == "camera_color_left"
        assert gt.encoding == "32FC1"
        np.testing.assert_array_equal(m.depth_from_image(gt),
                                      read_depth_png(drive.annotation_path(kitti_root, frame_id)))

    ((tf_stamp, tf),) = topics["/tf_static"]
    # First in the bag, also before an OXTS packet on /tf (the ego motion) that precedes its frame's sensors.
    assert tf_stamp == min(images[0][0], clouds[0][0], *(stamp for stamp, _ in topics.get("/tf", [])))
    poses = {(t.header.frame_id, t.child_frame_id): m.transform_from_msg(t) for t in tf.transforms}
    chained = np.linalg.inv(poses[("base_link", "camera_color_left")]) @ poses[("base_link", "velo_link")]
    # Calibration files keep 7 significant digits, so their rotation is orthonormal only to ~1e-7 and a
    # quaternion can match it only that closely: the chain must agree to within that deviation.
    lidar_to_camera = drive.calibration.lidar_to_camera
    rotation = lidar_to_camera[:3, :3]
    deviation = np.abs(rotation @ rotation.T - np.eye(3)).max()
    assert deviation < 1e-6
    np.testing.assert_allclose(chained, lidar_to_camera, rtol=0, atol=10 * deviation + 1e-12)


@pytest.mark.parametrize("distro, version, storage, durability",
                         [("humble", 8, "sqlite3", 1), ("jazzy", 9, "mcap", "transient_local")])
def test_kitti2bag_round_trip(tiny_kitti, tmp_path, capsys, distro, version, storage, durability):
    bag_path = tmp_path / "drive"
    assert kitti2bag("--kitti-root", tiny_kitti, "--drive", DRIVE, "--out", bag_path, "--distro", distro) == 0
    summary = capsys.readouterr().out
    assert f"version {version}, {storage}" in summary
    assert "/kitti/camera_color_left/depth_gt" in summary and "/kitti/velo/pointcloud" in summary

    info = metadata(bag_path)
    assert info["version"] == version and info["storage_identifier"] == storage
    (tf_qos,) = offered_qos(topic_metadata(info, "/tf_static"))
    assert tf_qos["durability"] == durability
    counts = {t["topic_metadata"]["name"]: t["message_count"] for t in info["topics_with_message_count"]}
    assert counts == {"/tf_static": 1, "/kitti/camera_color_left/image_raw": FRAMES,
                      "/kitti/camera_color_left/camera_info": FRAMES, "/kitti/velo/pointcloud": FRAMES,
                      "/kitti/camera_color_left/depth_gt": len(GT_FRAMES)}
    check_kitti_bag(bag_path, tiny_kitti, DRIVE, list(range(FRAMES)))


def test_kitti2bag_frame_range_and_storage_override(tiny_kitti, tmp_path):
    bag_path = tmp_path / "part"
    assert kitti2bag("--kitti-root", tiny_kitti, "--drive", DRIVE, "--out", bag_path, "--frames", "1:",
                     "--storage", "mcap") == 0
    info = metadata(bag_path)
    assert (info["version"], info["storage_identifier"]) == (8, "mcap")
    check_kitti_bag(bag_path, tiny_kitti, DRIVE, [1, 2])


def test_kitti2bag_errors(tiny_kitti, tmp_path, capsys):
    assert kitti2bag("--kitti-root", tiny_kitti, "--drive", "2011_09_26_drive_0099_sync", "--out",
                     tmp_path / "a") == 2
    assert "KITTI raw drive not found" in capsys.readouterr().err
    assert kitti2bag("--kitti-root", tmp_path / "nowhere", "--drive", DRIVE, "--out", tmp_path / "b") == 2
    assert "KITTI root not found" in capsys.readouterr().err
    assert kitti2bag("--kitti-root", tiny_kitti, "--drive", DRIVE, "--out", tmp_path / "c", "--frames", "5") == 2
    assert "--frames must look like A:B" in capsys.readouterr().err
    assert kitti2bag("--kitti-root", tiny_kitti, "--drive", DRIVE, "--out", tmp_path / "d", "--frames", "7:9") == 2
    assert "no frame of the drive lies in 7:9" in capsys.readouterr().err
    assert kitti2bag("--kitti-root", tiny_kitti, "--drive", DRIVE, "--out", tmp_path) == 2
    assert "exists already" in capsys.readouterr().err
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


def drive_frame_ids(root: Path, drive: str) -> list[int]:
    from depth_completion_ros.data.kitti import KittiRawDrive

    return list(KittiRawDrive(root / "kitti_raw", drive).frame_ids)


@pytest.mark.parametrize("distro", ["humble", "jazzy"])
def test_kitti2bag_on_the_synthetic_world(synthetic_kitti, tmp_path, distro):
    from depth_completion_ros.data.kitti import list_raw_drives

    drives = list_raw_drives(synthetic_kitti / "kitti_raw")
    assert len(drives) == 2
    for drive in drives:  # one train and one val drive: ground truth is found in both splits
        bag_path = tmp_path / f"{drive}_{distro}"
        assert kitti2bag("--kitti-root", synthetic_kitti, "--drive", drive, "--out", bag_path,
                         "--distro", distro) == 0
        check_kitti_bag(bag_path, synthetic_kitti, drive, drive_frame_ids(synthetic_kitti, drive))
        assert "/kitti/camera_color_left/depth_gt" in rosbag.bag_topics(bag_path)
