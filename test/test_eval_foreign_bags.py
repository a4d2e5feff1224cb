"""eval-bag on bags that other converters write, built here with `rosbags` alone from the synthetic drive's
files: ROS 1 kitti2bag bags (tf on /tf_static or on /tf, CameraInfo with and without P_rect_02's Tx), a bare
.mcap with topics of other names, and a Humble rosbag2 without message definitions. Each is scored against
KITTI's ground-truth PNGs, and the figures must equal a per-pixel computation done here from the drive's
files with the same baseline."""
import shutil
import sqlite3

import numpy as np
import pytest
import yaml
from rosbags.highlevel import AnyReader
from rosbags.highlevel.anyreader import AnyReaderError
from rosbags.rosbag1 import Writer as Writer1
from rosbags.rosbag2 import StoragePlugin
from rosbags.rosbag2 import Writer as Writer2
from rosbags.typesys import Stores, get_types_from_msg, get_typestore
from scipy.spatial.transform import Rotation

from depth_completion_ros.baselines import BaselineEngine
from depth_completion_ros.data.image_io import read_depth_png
from depth_completion_ros.data.kitti import KittiRawDrive
from depth_completion_ros.data.rosbag import BagError, bag_topics, read_bag
from depth_completion_ros.evaluation.bag_eval import AUTO, BagTopics, KittiGroundTruth, evaluate_bag, resolve_topics
from depth_completion_ros.pipeline import FrameProcessor

DRIVE = "2000_01_01_drive_0002_sync"
AUTO_TOPICS = BagTopics(AUTO, AUTO, AUTO, None)
KITTI = {"image": "/kitti/camera_color_left/image_raw", "info": "/kitti/camera_color_left/camera_info",
         "points": "/kitti/velo/pointcloud"}
BASE_TO_IMU = [-2.71 / 2.0 - 0.05, 0.32, 0.93]  # kitti2bag's base_link -> imu_link offset


# ---------------------------------------------------------------------------------------- the drive
def _calib(path):
    values = {}
    for line in path.read_text().splitlines():
        key, _, rest = line.partition(":")
        try:
            values[key.strip()] = np.array(rest.split(), dtype=np.float64)
        except ValueError:
            continue
    return values


def _rigid(rotation, translation):
    transform = np.eye(4)
    transform[:3, :3] = np.asarray(rotation).reshape(3, 3)
    transform[:3, 3] = translation
    return transform


class Drive:
    """What a converter reads from the synthetic drive's files, and the tf chain kitti2bag derives."""

    def __init__(self, root):
        self.raw = KittiRawDrive(root / "kitti_raw", DRIVE)
        self.gt_dir = root / "data_depth_annotated" / "val" / DRIVE / "proj_depth" / "groundtruth" / "image_02"
        calibration = self.raw.calibration
        self.camera, self.lidar_to_camera = calibration.camera, calibration.lidar_to_camera
        cam = _calib(self.raw.path.parent / "calib_cam_to_cam.txt")
        imu = _calib(self.raw.path.parent / "calib_imu_to_velo.txt")
        self.K_02, self.D_02, self.R_rect_02 = cam["K_02"], cam["D_02"], cam["R_rect_02"]
        self.P_rect_02 = cam["P_rect_02"]
        velo_from_imu = _rigid(imu["R"], imu["T"])
        camera_from_imu = self.lidar_to_camera @ velo_from_imu
        # (parent, child, pose of child in parent), as kitti2bag writes them (inverses of the calibrations).
        self.chain = [("base_link", "imu_link", _rigid(np.eye(3), BASE_TO_IMU)),
                      ("imu_link", "velo_link", np.linalg.inv(velo_from_imu)),
                      ("imu_link", "camera_color_left", np.linalg.inv(camera_from_imu))]

    def frames(self):
        for frame in self.raw.frame_ids:
            yield (frame, int(self.raw.image_timestamps_ns[frame]), int(self.raw.velodyne_timestamps_ns[frame]),
                   self.raw.read_image(frame), self.raw.read_velodyne(frame))


@pytest.fixture(scope="module")
def drive(synthetic_kitti):
    return Drive(synthetic_kitti)


@pytest.fixture(scope="module")
def processor():
    return FrameProcessor(BaselineEngine("nearest"))


@pytest.fixture(scope="module")
def expected(drive, processor):
    """Per-image RMSE and MAE (mm) over the ground-truth pixels, averaged over the images, computed from the
    drive's PNG image, .bin scan and calibration with the same FrameProcessor; and the pixel count."""
    rmse, mae, pixels = [], [], 0
    for frame, _, _, rgb, scan in drive.frames():
        dense = processor.process(rgb, scan, camera=drive.camera, lidar_to_camera=drive.lidar_to_camera).dense
        gt = read_depth_png(drive.gt_dir / f"{frame:010d}.png")
        valid = gt > 0
        assert np.isfinite(dense[valid]).all() and (dense[valid] > 0).all()  # nothing for the devkit to fill
        error = dense[valid].astype(np.float64) - gt[valid].astype(np.float64)
        rmse.append(np.sqrt(np.mean(error ** 2)) * 1000)
        mae.append(np.mean(np.abs(error)) * 1000)
        pixels += int(valid.sum())
    return {"rmse_mm": float(np.mean(rmse)), "mae_mm": float(np.mean(mae)), "pixels": pixels, "frames": len(rmse)}


def _ground_truth(drive, match="stamp"):
    return KittiGroundTruth.from_folders(drive.gt_dir, drive.raw.path, match=match)


def _assert_figures(summary, expected):
    # tf carries the calibration as quaternions through a chain of frames: rounding may move a LiDAR point
    # that sits on a pixel border by one pixel (~1e-6 of the RMSE per pixel), hence rel=1e-5.
    assert summary["frames_scored"] == expected["frames"] and summary["frames_dropped"] == 0
    assert summary["pixels"] == expected["pixels"]
    for key in ("rmse_mm", "mae_mm"):
        assert summary[key] == pytest.approx(expected[key], rel=1e-5), key


# ------------------------------------------------------------------------------------ message builders
class Messages:
    """sensor_msgs, geometry_msgs and tf2_msgs messages of one typestore (ROS 1 or ROS 2 field names)."""

    def __init__(self, typestore, ros1: bool):
        self.store, self.types, self.ros1 = typestore, typestore.types, ros1

    def header(self, stamp_ns, frame_id):
        stamp = self.types["builtin_interfaces/msg/Time"](sec=stamp_ns // 10 ** 9, nanosec=stamp_ns % 10 ** 9)
        extra = {"seq": 0} if self.ros1 else {}
        return self.types["std_msgs/msg/Header"](stamp=stamp, frame_id=frame_id, **extra)

    def image(self, header, pixels, encoding):
        channels = 1 if pixels.ndim == 2 else pixels.shape[2]
        return self.types["sensor_msgs/msg/Image"](
            header=header, height=pixels.shape[0], width=pixels.shape[1], encoding=encoding, is_bigendian=0,
            step=pixels.shape[1] * channels * pixels.dtype.itemsize,
            data=np.ascontiguousarray(pixels).reshape(-1).view(np.uint8))

    def camera_info(self, header, width, height, k, p, d=np.zeros(5), r=np.eye(3)):
        roi = self.types["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                             do_rectify=False)
        arrays = {"d": np.asarray(d, np.float64), "k": np.asarray(k, np.float64).reshape(-1),
                  "r": np.asarray(r, np.float64).reshape(-1), "p": np.asarray(p, np.float64).reshape(-1)}
        if self.ros1:
            arrays = {name.upper(): value for name, value in arrays.items()}
        return self.types["sensor_msgs/msg/CameraInfo"](
            header=header, height=height, width=width, distortion_model="plumb_bob", binning_x=0, binning_y=0,
            roi=roi, **arrays)

    def cloud(self, header, scan):
        field = self.types["sensor_msgs/msg/PointField"]
        data = np.ascontiguousarray(scan, dtype="<f4")
        return self.types["sensor_msgs/msg/PointCloud2"](
            header=header, height=1, width=len(data),
            fields=[field(name=name, offset=4 * i, datatype=7, count=1) for i, name in enumerate("xyzi")],
            is_bigendian=False, point_step=16, row_step=16 * len(data), data=data.reshape(-1).view(np.uint8),
            is_dense=True)

    def tf(self, stamp_ns, chain):
        t = self.types
        transforms = []
        for parent, child, pose in chain:
            x, y, z, w = Rotation.from_matrix(pose[:3, :3]).as_quat()
            transforms.append(t["geometry_msgs/msg/TransformStamped"](
                header=self.header(stamp_ns, parent), child_frame_id=child,
                transform=t["geometry_msgs/msg/Transform"](
                    translation=t["geometry_msgs/msg/Vector3"](x=pose[0, 3], y=pose[1, 3], z=pose[2, 3]),
                    rotation=t["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w))))
        return t["tf2_msgs/msg/TFMessage"](transforms=transforms)


def _rectified_info(msgs, drive, header, tx):
    """kitti2bag's CameraInfo: K, D, R of the unrectified camera 02 and P = P_rect_02 (tx=True), or the
    monocular form P = [K_rect | 0] with no distortion (tx=False)."""
    if tx:
        return msgs.camera_info(header, drive.camera.width, drive.camera.height, drive.K_02, drive.P_rect_02,
                                d=drive.D_02, r=drive.R_rect_02)
    return msgs.camera_info(header, drive.camera.width, drive.camera.height, drive.camera.K,
                            np.hstack([drive.camera.K, np.zeros((3, 1))]))


# ------------------------------------------------------------------------------------------ the bags
def write_ros1_kitti2bag(path, drive, tf_topic="/tf_static", tx=False):
    """A ROS 1 bag in kitti2bag's layout. Stamps are microseconds, as kitti2bag's float seconds give them.
    The tf chain goes out at every frame, as kitti2bag does; on /tf it comes with the vehicle's moving
    pose (world -> base_link), on /tf_static alone."""
    store = get_typestore(Stores.ROS1_NOETIC)
    store.register(get_types_from_msg("geometry_msgs/TransformStamped[] transforms", "tf2_msgs/msg/TFMessage"))
    msgs = Messages(store, ros1=True)
    with Writer1(path) as bag:
        connections = {
            "tf": bag.add_connection(tf_topic, "tf2_msgs/msg/TFMessage", typestore=store),
            "image": bag.add_connection(KITTI["image"], "sensor_msgs/msg/Image", typestore=store),
            "info": bag.add_connection(KITTI["info"], "sensor_msgs/msg/CameraInfo", typestore=store),
            "points": bag.add_connection(KITTI["points"], "sensor_msgs/msg/PointCloud2", typestore=store),
        }

        def write(name, stamp_ns, msg):
            bag.write(connections[name], stamp_ns, store.serialize_ros1(msg, connections[name].msgtype))

        for index, (_, image_ns, velo_ns, rgb, scan) in enumerate(drive.frames()):
            image_ns, velo_ns = image_ns // 1000 * 1000, velo_ns // 1000 * 1000
            chain = list(drive.chain)
            if tf_topic == "/tf":
                chain.insert(0, ("world", "base_link", _rigid(np.eye(3), [1.1 * index, 0.02 * index, 0.0])))
            write("tf", min(image_ns, velo_ns), msgs.tf(min(image_ns, velo_ns), chain))
            header = msgs.header(image_ns, "camera_color_left")
            write("image", image_ns, msgs.image(header, rgb[..., ::-1], "bgr8"))
            write("info", image_ns, _rectified_info(msgs, drive, header, tx))
            write("points", velo_ns, msgs.cloud(msgs.header(velo_ns, "velo_link"), scan))
    return path


CAMERA_NS = "/sensing/camera/front"
OTHER_TOPICS = {"image": f"{CAMERA_NS}/image_raw", "info": f"{CAMERA_NS}/camera_info",
                "depth": f"{CAMERA_NS}/depth", "points": "/sensing/lidar/points"}


def write_rosbag2(path, drive, distro="jazzy", storage=StoragePlugin.MCAP, topics=None, depth_topic=True):
    """A rosbag2 (metadata v9 for Jazzy, v8 otherwise) with the tf chain once on /tf_static, the camera as
    rgb8 and, unless `depth_topic` is False, a 32FC1 depth image with its CameraInfo in the camera's
    namespace: the topic discovery must not take it for the camera."""
    topics = dict(OTHER_TOPICS if topics is None else topics)
    store = get_typestore(Stores.ROS2_JAZZY if distro == "jazzy" else Stores.ROS2_HUMBLE)
    msgs = Messages(store, ros1=False)
    with Writer2(path, version=9 if distro == "jazzy" else 8, storage_plugin=storage) as bag:
        connections = {"tf": bag.add_connection("/tf_static", "tf2_msgs/msg/TFMessage", typestore=store)}
        for name, msgtype in (("image", "Image"), ("info", "CameraInfo"), ("points", "PointCloud2")):
            connections[name] = bag.add_connection(topics[name], f"sensor_msgs/msg/{msgtype}", typestore=store)
        if depth_topic:
            connections["depth"] = bag.add_connection(topics["depth"], "sensor_msgs/msg/Image", typestore=store)
            connections["depth_info"] = bag.add_connection(f"{topics['depth']}/camera_info",
                                                           "sensor_msgs/msg/CameraInfo", typestore=store)

        def write(name, stamp_ns, msg):
            bag.write(connections[name], stamp_ns, store.serialize_cdr(msg, connections[name].msgtype))

        first = True
        for _, image_ns, velo_ns, rgb, scan in drive.frames():
            if first:
                write("tf", min(image_ns, velo_ns), msgs.tf(min(image_ns, velo_ns), drive.chain))
                first = False
            header = msgs.header(image_ns, "camera_color_left")
            write("image", image_ns, msgs.image(header, rgb, "rgb8"))
            write("info", image_ns, _rectified_info(msgs, drive, header, tx=False))
            if depth_topic:
                write("depth", image_ns, msgs.image(header, np.full(rgb.shape[:2], 5.0, np.float32), "32FC1"))
                write("depth_info", image_ns, _rectified_info(msgs, drive, header, tx=False))
            write("points", velo_ns, msgs.cloud(msgs.header(velo_ns, "velo_link"), scan))
    return path


def strip_to_humble(path):
    """Make a v8 sqlite3 rosbag2 look as Humble records it: no message definitions anywhere. The database
    goes back to schema 3 (no message_definitions table, no type_description_hash column) and is named
    <bag>_0.db3; metadata.yaml goes back to version 5 (no type_description_hash, ros_distro, custom_data)."""
    database = path / f"{path.name}_0.db3"
    (path / f"{path.name}.db3").rename(database)
    info = yaml.safe_load((path / "metadata.yaml").read_text())
    meta = info["rosbag2_bagfile_information"]
    meta["version"] = 5
    for key in ("ros_distro", "custom_data"):
        meta.pop(key, None)
    for topic in meta["topics_with_message_count"]:
        topic["topic_metadata"].pop("type_description_hash", None)
    meta["relative_file_paths"] = [database.name]
    for entry in meta["files"]:
        entry["path"] = database.name
    text = yaml.safe_dump(info, sort_keys=False)
    (path / "metadata.yaml").write_text(text)
    with sqlite3.connect(database) as db:
        db.executescript("""
            DROP TABLE message_definitions;
            CREATE TABLE topics_humble(id INTEGER PRIMARY KEY, name TEXT NOT NULL, type TEXT NOT NULL,
                                       serialization_format TEXT NOT NULL, offered_qos_profiles TEXT NOT NULL);
            INSERT INTO topics_humble SELECT id, name, type, serialization_format, offered_qos_profiles FROM topics;
            DROP TABLE topics;
            ALTER TABLE topics_humble RENAME TO topics;
            UPDATE schema SET schema_version = 3, ros_distro = 'humble';
        """)
        db.execute("UPDATE metadata SET metadata_version = 5, metadata = ?", (text,))
    db.close()
    return path


# ------------------------------------------------------------------------------------------ the tests
@pytest.fixture(scope="module")
def ros1_bag(drive, tmp_path_factory):
    return write_ros1_kitti2bag(tmp_path_factory.mktemp("ros1") / "kitti.bag", drive)


@pytest.fixture(scope="module")
def ros1_summary(ros1_bag, drive, processor, tmp_path_factory):
    return evaluate_bag(ros1_bag, processor, tmp_path_factory.mktemp("ros1_report"), topics=AUTO_TOPICS,
                        panels=0, progress=False, kitti_gt=_ground_truth(drive))


def test_a_ros1_kitti2bag_bag_scores_as_computed_from_the_drive_files(ros1_bag, ros1_summary, expected):
    topics = bag_topics(ros1_bag)
    assert topics["/tf_static"][0] == "tf2_msgs/msg/TFMessage"
    assert topics[KITTI["info"]][0] == "sensor_msgs/msg/CameraInfo"
    _assert_figures(ros1_summary, expected)
    assert ros1_summary["topics"] == {"image": KITTI["image"], "camera_info": KITTI["info"],
                                      "points": KITTI["points"], "ground_truth": None}
    matched = ros1_summary["kitti_gt"]
    assert matched["match"] == "stamp" and matched["frames_matched"] == expected["frames"]
    assert matched["frames_unmatched"] == matched["frames_without_gt_png"] == 0
    assert 0 < matched["max_offset_s"] < 1e-6  # the stamps were cut to microseconds
    assert ros1_summary["camera_info_translation_ignored"] is False


def test_the_tf_chain_on_dynamic_tf_gives_the_same_figures(drive, processor, ros1_summary, expected, tmp_path):
    bag = write_ros1_kitti2bag(tmp_path / "dynamic.bag", drive, tf_topic="/tf")
    assert "/tf_static" not in bag_topics(bag)
    summary = evaluate_bag(bag, processor, tmp_path / "report", topics=AUTO_TOPICS, panels=0, progress=False,
                           kitti_gt=_ground_truth(drive))
    _assert_figures(summary, expected)
    for key in ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km"):
        assert summary[key] == ros1_summary[key], key


def test_camera_info_with_the_stereo_tx_of_p_rect_02_is_not_applied_twice(drive, processor, ros1_summary, tmp_path):
    """kitti2bag writes P = P_rect_02 (Tx = fx * b) and K, D of the unrectified camera, while tf already
    places camera_color_left (camera 02, baseline included). The tf pose wins and only P's left 3x3 is used:
    the figures are exactly those of the bag with P = [K | 0]."""
    bag = write_ros1_kitti2bag(tmp_path / "tx.bag", drive, tx=True)
    info = list(read_bag(bag, [KITTI["info"]]))[0].msg
    assert info.P[3] == pytest.approx(drive.P_rect_02[3]) and info.P[3] > 40  # fx * 6 cm
    summary = evaluate_bag(bag, processor, tmp_path / "report", topics=AUTO_TOPICS, panels=0, progress=False,
                           kitti_gt=_ground_truth(drive))
    assert summary["camera_info_translation_ignored"] is True
    for key in ("rmse_mm", "mae_mm", "irmse_1km", "imae_1km", "pixels", "frames_scored"):
        assert summary[key] == ros1_summary[key], key


def test_a_bare_mcap_file_with_other_topic_names_is_found_and_scored(drive, processor, expected, tmp_path):
    folder = write_rosbag2(tmp_path / "recording", drive)
    single = tmp_path / "drive.mcap"
    shutil.copy(next(folder.glob("*.mcap")), single)
    shutil.rmtree(folder)
    topics = resolve_topics(single, bag_topics(single), AUTO_TOPICS)
    assert (topics.image, topics.camera_info, topics.points) == (OTHER_TOPICS["image"], OTHER_TOPICS["info"],
                                                                 OTHER_TOPICS["points"])
    summary = evaluate_bag(single, processor, tmp_path / "report", topics=AUTO_TOPICS, panels=0, progress=False,
                           kitti_gt=_ground_truth(drive))
    _assert_figures(summary, expected)
    # The same file in a folder that lost its metadata.yaml reads too.
    lost = tmp_path / "lost"
    lost.mkdir()
    shutil.copy(single, lost / "drive_0.mcap")
    assert bag_topics(lost) == bag_topics(single)


def test_a_humble_bag_without_message_definitions_reads_with_the_humble_types(drive, processor, expected, tmp_path):
    bag = strip_to_humble(write_rosbag2(tmp_path / "humble", drive, distro="humble",
                                        storage=StoragePlugin.SQLITE3, topics=KITTI, depth_topic=False))
    assert sorted(p.name for p in bag.iterdir()) == ["humble_0.db3", "metadata.yaml"]
    with pytest.raises(AnyReaderError, match="no type definitions"):  # really none: a plain reader refuses it
        with AnyReader([bag]):
            pass
    summary = evaluate_bag(bag, processor, tmp_path / "report", topics=AUTO_TOPICS, panels=0, progress=False,
                           kitti_gt=_ground_truth(drive))
    _assert_figures(summary, expected)


def write_topics_bag(path, kinds):
    """A tiny Jazzy bag with one message per topic; `kinds` maps topic -> rgb, depth, info or cloud."""
    store = get_typestore(Stores.ROS2_JAZZY)
    msgs = Messages(store, ros1=False)
    header = msgs.header(10 ** 9, "camera")
    build = {"rgb": ("Image", lambda: msgs.image(header, np.zeros((4, 6, 3), np.uint8), "rgb8")),
             "depth": ("Image", lambda: msgs.image(header, np.ones((4, 6), np.uint16), "16UC1")),
             "info": ("CameraInfo", lambda: msgs.camera_info(header, 6, 4, np.eye(3), np.eye(3, 4))),
             "cloud": ("PointCloud2", lambda: msgs.cloud(header, np.zeros((3, 4), np.float32)))}
    with Writer2(path, version=9, storage_plugin=StoragePlugin.MCAP) as bag:
        for topic, kind in kinds.items():
            msgtype, make = build[kind]
            connection = bag.add_connection(topic, f"sensor_msgs/msg/{msgtype}", typestore=store)
            bag.write(connection, 10 ** 9, store.serialize_cdr(make(), connection.msgtype))
    return path


def test_ambiguous_topics_are_refused_with_the_candidates_and_the_flag(tmp_path):
    front = {"/front/image_raw": "rgb", "/front/camera_info": "info", "/front/depth/image": "depth",
             "/front/depth/camera_info": "info"}
    two_clouds = write_topics_bag(tmp_path / "clouds", {**front, "/lidar/top": "cloud", "/lidar/rear": "cloud"})
    with pytest.raises(BagError, match=r"LiDAR cloud .*2 candidates: /lidar/rear, /lidar/top\); "
                                       r"name it with --points-topic"):
        resolve_topics(two_clouds, bag_topics(two_clouds), AUTO_TOPICS)
    picked = resolve_topics(two_clouds, bag_topics(two_clouds), BagTopics(AUTO, AUTO, "/lidar/rear", None))
    # The depth image beside its own camera_info is left out by its encoding.
    assert (picked.image, picked.camera_info, picked.points) == ("/front/image_raw", "/front/camera_info",
                                                                 "/lidar/rear")

    two_cameras = write_topics_bag(tmp_path / "cameras", {**front, "/rear/image_raw": "rgb",
                                                          "/rear/camera_info": "info", "/lidar": "cloud"})
    with pytest.raises(BagError, match=r"camera image .*2 candidates: /front/image_raw, /rear/image_raw; depth "
                                       r"images left out: /front/depth/image \(16UC1\)\); name it with "
                                       r"--image-topic"):
        resolve_topics(two_cameras, bag_topics(two_cameras), AUTO_TOPICS)
    picked = resolve_topics(two_cameras, bag_topics(two_cameras), BagTopics("/rear/image_raw", AUTO, AUTO, None))
    assert picked.camera_info == "/rear/camera_info"

    no_sibling = write_topics_bag(tmp_path / "infos", {"/camera/image": "rgb", "/info_a": "info", "/info_b": "info",
                                                       "/lidar": "cloud"})
    with pytest.raises(BagError, match=r"CameraInfo of /camera/image .*/info_a, /info_b\); name it with --info-topic"):
        resolve_topics(no_sibling, bag_topics(no_sibling), AUTO_TOPICS)
    no_cloud = write_topics_bag(tmp_path / "front", front)
    with pytest.raises(BagError, match=r"LiDAR cloud .*0 candidates: none"):
        resolve_topics(no_cloud, bag_topics(no_cloud), AUTO_TOPICS)
