"""Geometry core: calibration parsing, projection (against a per-point reference), un-projection."""
import numpy as np
import pytest
import torch

from depth_completion_ros import geometry
from depth_completion_ros.geometry import (
    CalibrationError,
    PinholeCamera,
    load_kitti_calibration,
    project,
    unproject,
)

# Published KITTI raw calibration of 2011_09_26 (cameras 00 and 02, Velodyne).
CAM_TO_CAM = """calib_time: 09-Jan-2012 13:57:47
corner_dist: 9.950000e-02
S_00: 1.392000e+03 5.120000e+02
R_rect_00: 9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 7.402527e-03 4.351614e-03 9.999631e-01
P_rect_00: 7.215377e+02 0.000000e+00 6.095593e+02 0.000000e+00 0.000000e+00 7.215377e+02 1.728540e+02 0.000000e+00 0.000000e+00 0.000000e+00 1.000000e+00 0.000000e+00
S_rect_02: 1.242000e+03 3.750000e+02
P_rect_02: 7.215377e+02 0.000000e+00 6.095593e+02 4.485728e+01 0.000000e+00 7.215377e+02 1.728540e+02 2.163791e-01 0.000000e+00 0.000000e+00 1.000000e+00 2.745884e-03
"""  # noqa: E501 (published calibration file: one line per matrix)
VELO_TO_CAM = """calib_time: 15-Mar-2012 11:37:16
R: 7.533745e-03 -9.999714e-01 -6.166020e-04 1.480249e-02 7.280733e-04 -9.998902e-01 9.998621e-01 7.523790e-03 1.480755e-02
T: -4.069766e-03 -7.631618e-02 -2.717806e-01
delta_f: 0.000000e+00 0.000000e+00
delta_c: 0.000000e+00 0.000000e+00
"""  # noqa: E501 (published calibration file: one line per matrix)


@pytest.fixture
def calib_dir(tmp_path):
    (tmp_path / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM)
    (tmp_path / "calib_velo_to_cam.txt").write_text(VELO_TO_CAM)
    return tmp_path


def reference_projection(points, camera, lidar_to_camera, min_depth=0.1):
    """Per-point loop: the obviously-correct definition the vectorised code must match."""
    depth = np.zeros((camera.height, camera.width), dtype=np.float32)
    for x, y, z in points:
        if not np.isfinite([x, y, z]).all():
            continue
        pc = lidar_to_camera @ np.array([x, y, z, 1.0])
        if pc[2] <= min_depth:
            continue
        u = camera.fx * pc[0] / pc[2] + camera.cx
        v = camera.fy * pc[1] / pc[2] + camera.cy
        col, row = int(np.floor(u + 0.5)), int(np.floor(v + 0.5))
        if 0 <= col < camera.width and 0 <= row < camera.height:
            if depth[row, col] == 0 or pc[2] < depth[row, col]:
                depth[row, col] = pc[2]
    return depth


def test_kitti_calibration_parses_known_matrices(calib_dir):
    calib = load_kitti_calibration(calib_dir)
    assert (calib.camera.width, calib.camera.height) == (1242, 375)
    assert calib.camera.fx == pytest.approx(721.5377) and calib.camera.cy == pytest.approx(172.854)
    assert calib.P_rect[0, 3] == pytest.approx(44.85728)
    assert calib.R_rect_00[0, 1] == pytest.approx(9.837760e-03)
    assert calib.velo_to_cam0[:3, 3] == pytest.approx([-4.069766e-03, -7.631618e-02, -2.717806e-01])
    # Camera 02 sits about 6 cm left of camera 00 (P[0,3] / fx); the rest of the offset is tiny.
    baseline = np.linalg.solve(calib.camera.K, calib.P_rect[:, 3])
    assert baseline[0] == pytest.approx((44.85728 - 609.5593 * 2.745884e-03) / 721.5377, rel=1e-6)
    assert baseline[2] == pytest.approx(2.745884e-03)


def test_camera_and_transform_reproduce_kitti_projection_matrix(calib_dir):
    """K @ lidar_to_camera must equal the devkit's P_rect_02 @ R_rect_00 @ Tr_velo_to_cam."""
    calib = load_kitti_calibration(calib_dir)
    rng = np.random.default_rng(1)
    points = np.c_[rng.uniform(5, 60, 200), rng.uniform(-10, 10, 200), rng.uniform(-2, 1, 200), np.ones(200)]
    devkit = (calib.projection @ points.T).T
    ours = (calib.camera.K @ (calib.lidar_to_camera @ points.T)[:3]).T
    np.testing.assert_allclose(devkit[:, :2] / devkit[:, 2:], ours[:, :2] / ours[:, 2:], atol=1e-9)
    np.testing.assert_allclose(devkit[:, 2], ours[:, 2], atol=1e-9)


def test_missing_calibration_key_names_key_and_file(tmp_path):
    (tmp_path / "calib_cam_to_cam.txt").write_text(CAM_TO_CAM.replace("R_rect_00", "R_rect_XX"))
    (tmp_path / "calib_velo_to_cam.txt").write_text(VELO_TO_CAM)
    with pytest.raises(CalibrationError, match=r"calib_cam_to_cam.txt: missing key 'R_rect_00'"):
        load_kitti_calibration(tmp_path)


def test_wrong_number_of_values_and_missing_file(calib_dir):
    (calib_dir / "calib_velo_to_cam.txt").write_text(VELO_TO_CAM.replace("T: -4.069766e-03 ", "T: "))
    with pytest.raises(CalibrationError, match=r"key 'T' has 2 values, expected 3"):
        load_kitti_calibration(calib_dir)
    (calib_dir / "calib_velo_to_cam.txt").unlink()
    with pytest.raises(FileNotFoundError, match="calib_velo_to_cam.txt"):
        load_kitti_calibration(calib_dir)


def test_write_then_read_calibration_round_trip(tmp_path, calib_dir):
    calib = load_kitti_calibration(calib_dir)
    camera = {"S": [1392, 512], "K": calib.camera.K, "D": np.zeros(5), "R": np.eye(3), "T": np.zeros(3),
              "S_rect": [1242, 375], "R_rect": np.eye(3), "P_rect": calib.P_rect}
    geometry.write_kitti_calibration(tmp_path / "out", {"00": camera, "02": camera}, calib.R_rect_00,
                                     calib.velo_to_cam0)
    again = load_kitti_calibration(tmp_path / "out")
    np.testing.assert_allclose(again.lidar_to_camera, calib.lidar_to_camera, atol=1e-6)
    assert again.camera == calib.camera


def test_projection_matches_per_point_reference(calib_dir):
    calib = load_kitti_calibration(calib_dir)
    rng = np.random.default_rng(0)
    points = np.c_[rng.uniform(-5, 70, 3000), rng.uniform(-25, 25, 3000), rng.uniform(-3, 2, 3000)]
    points = np.vstack([points, points[:500] * 1.2])  # many pixels get two candidate returns
    expected = reference_projection(points, calib.camera, calib.lidar_to_camera)
    got, stats = project(points.astype(np.float32), calib.camera, calib.lidar_to_camera, return_stats=True)
    assert got.dtype == np.float32 and got.shape == (375, 1242)
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert stats.pixels == np.count_nonzero(expected)
    assert stats.input == stats.nonfinite + stats.behind + stats.out_of_range + stats.outside + stats.projected


def test_projection_keeps_the_nearest_return():
    camera = PinholeCamera(20, 10, 10.0, 10.0, 9.5, 4.5)
    far, near = [0.0, 0.0, 8.0], [0.0, 0.0, 3.0]
    for order in ([far, near], [near, far]):
        depth = project(np.array(order), camera)
        # The ray through (0, 0) hits pixel (floor(9.5 + 0.5), floor(4.5 + 0.5)) = (col 10, row 5).
        assert np.count_nonzero(depth) == 1 and depth[5, 10] == pytest.approx(3.0)


def test_torch_projection_equals_numpy(calib_dir):
    calib = load_kitti_calibration(calib_dir)
    rng = np.random.default_rng(2)
    points = np.c_[rng.uniform(0, 60, 5000), rng.uniform(-20, 20, 5000), rng.uniform(-3, 2, 5000)]
    points = points.astype(np.float32)
    expected = project(points, calib.camera, calib.lidar_to_camera, max_depth=50.0)
    got = project(torch.from_numpy(points), calib.camera, calib.lidar_to_camera, max_depth=50.0)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_nonfinite_behind_and_far_points_are_dropped_and_counted():
    camera = PinholeCamera(40, 30, 20.0, 20.0, 19.5, 14.5)
    points = np.array([[0, 0, 5], [np.nan, 0, 5], [0, np.inf, 5], [0, 0, -5], [0, 0, 0.05], [0, 0, 200],
                       [100, 0, 5], [1, 1, 6]], dtype=np.float32)
    depth, stats = project(points, camera, max_depth=120.0, return_stats=True)
    assert (stats.input, stats.nonfinite, stats.behind, stats.out_of_range, stats.outside) == (8, 2, 2, 1, 1)
    assert stats.projected == 2 and stats.pixels == 2 and np.isfinite(depth).all()


def test_bad_point_arrays_are_rejected_with_their_shape():
    camera = PinholeCamera(4, 4, 2.0, 2.0, 1.5, 1.5)
    with pytest.raises(ValueError, match=r"\(N, 3\).*got shape \(5, 2\)"):
        project(np.zeros((5, 2)), camera)
    with pytest.raises(ValueError, match=r"got shape \(12,\)"):
        project(np.zeros(12), camera)
    # Extra columns (intensity) are accepted and ignored.
    assert project(np.array([[0.0, 0.0, 2.0, 0.7]]), camera).max() == pytest.approx(2.0)


@pytest.mark.parametrize("use_torch", [False, True])
def test_project_unproject_round_trip(use_torch, calib_dir):
    calib = load_kitti_calibration(calib_dir)
    rng = np.random.default_rng(3)
    depth = np.where(rng.random((375, 1242)) < 0.05, rng.uniform(1, 80, (375, 1242)), 0).astype(np.float32)
    if use_torch:
        depth = torch.from_numpy(depth)
    camera_to_lidar = geometry.invert_transform(calib.lidar_to_camera)
    points, (rows, cols) = unproject(depth, calib.camera, camera_to_lidar)
    again = project(points, calib.camera, calib.lidar_to_camera)
    np.testing.assert_allclose(np.asarray(again), np.asarray(depth), rtol=1e-4, atol=1e-4)
    assert len(rows) == np.count_nonzero(np.asarray(depth))


def test_camera_from_camera_info_crop_and_scale():
    P = [700.0, 0, 600, 0, 0, 710, 180, 0, 0, 0, 1, 0]
    camera = PinholeCamera.from_camera_info(k=[0] * 9, p=P, width=1242, height=375)
    assert (camera.fx, camera.fy, camera.cx, camera.cy) == (700, 710, 600, 180)
    cropped = camera.bottom_crop(352, 1216)
    assert (cropped.cx, cropped.cy, cropped.width, cropped.height) == (600 - 13, 180 - 23, 1216, 352)
    with pytest.raises(CalibrationError, match="neither a non-zero P"):
        PinholeCamera.from_camera_info(k=[0] * 9, p=[0] * 12, width=10, height=10)
    half = camera.scaled(0.5)
    # A pixel centre maps to the same ray before and after scaling.
    point = np.array([[1.0, -0.5, 10.0]])
    u_full = camera.fx * 0.1 + camera.cx
    u_half = half.fx * 0.1 + half.cx
    assert u_half == pytest.approx((u_full + 0.5) * 0.5 - 0.5)
    assert project(point, half).shape == (half.height, half.width)


def test_quaternion_round_trip():
    rng = np.random.default_rng(4)
    for _ in range(20):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        R = geometry.quaternion_to_rotation(*q)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        q2 = np.array(geometry.rotation_to_quaternion(R))
        np.testing.assert_allclose(geometry.quaternion_to_rotation(*q2), R, atol=1e-12)


def test_transform_tree_chains_through_a_common_parent():
    rng = np.random.default_rng(5)

    def random_transform():
        q = rng.normal(size=4)
        return geometry.make_transform(geometry.quaternion_to_rotation(*q), rng.normal(size=3))

    base_from_velo, base_from_cam = random_transform(), random_transform()
    tree = geometry.TransformTree()
    tree.add("base_link", "velo_link", base_from_velo)
    tree.add("/base_link", "camera_color_left", base_from_cam)
    cam_from_velo = tree.lookup("camera_color_left", "velo_link")
    np.testing.assert_allclose(cam_from_velo, geometry.invert_transform(base_from_cam) @ base_from_velo, atol=1e-12)
    np.testing.assert_allclose(tree.lookup("velo_link", "camera_color_left") @ cam_from_velo, np.eye(4), atol=1e-12)
    with pytest.raises(LookupError, match="unknown"):
        tree.lookup("camera_color_left", "imu_link")
    tree.add("odom", "imu_link", np.eye(4))
    with pytest.raises(LookupError, match="not connected"):
        tree.lookup("camera_color_left", "imu_link")
