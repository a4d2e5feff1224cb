"""Raw-camera drives of the synthetic world: exact rendering through a lens distortion (tiled culling equal to a
brute-force cast), the depth files in the raw grid, the calibration and manifest, rectification back to the
rectified render, and kitti2bag's raw CameraInfo."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from depth_completion_ros import geometry
from depth_completion_ros.data.image_io import read_depth_png, read_rgb_png
from depth_completion_ros.data.kitti import KittiRawDrive, load_raw_camera, raw_camera_of_drive
from depth_completion_ros.data.synth import generate_dataset, rawcam, sensors
from depth_completion_ros.data.synth.raycast import CameraRays, Primitive, TiledCameraRays, cast
from depth_completion_ros.data.synth.scene import build_scene
from depth_completion_ros.data.synth.writer import GT_SECTOR_DEG, ground_truth
from depth_completion_ros.raw_camera import RawCamera

DATE = "2000_01_01"
DRIVE = f"{DATE}_drive_0001_sync"
SEED = 5
LIDAR = sensors.VelodyneModel(columns=700)  # a coarse sweep: the test is about where points land, not density
GT_NEIGHBOURS = 1
ROTATION = geometry.quaternion_to_rotation(0.004, -0.008, 0.003, 1.0)  # ~1 deg: rectified <- raw
# One drive per model: plumb_bob with a rectification rotation, the others with their default coefficients
# (equidistant's drive is in the val split: no data_depth_selection crops for a raw camera).
DRIVES = {
    "plumb_bob": dict(raw_camera={"model": "plumb_bob", "D": (-0.3, 0.1, 0.001, -0.0005, 0.0), "R": ROTATION}),
    "rational_polynomial": dict(raw_camera="rational_polynomial"),
    "equidistant": dict(raw_camera="equidistant", val_drives=1),
}
MODELS = tuple(DRIVES)


class _BruteForce(TiledCameraRays):
    """The same rays, every primitive intersected with the whole image."""

    def windows(self, primitive):
        return [(slice(0, self.height), slice(0, self.width))]


def _small_rectified() -> geometry.PinholeCamera:
    """KITTI's rectified camera 02 (P_rect_02's K) at a quarter of its size, 310x94: quick to ray cast."""
    return geometry.PinholeCamera(1242, 375, 721.5377, 721.5377, 609.5593, 172.854).scaled(0.25)


@pytest.fixture(scope="module")
def rig(tmp_path_factory) -> geometry.KittiCalibration:
    """Camera 02's calibration as the generator writes it (for the rig's LiDAR -> camera transform)."""
    return sensors.write_calibration(tmp_path_factory.mktemp("calibration"))


@pytest.fixture(scope="module")
def raw_drives(tmp_path_factory) -> dict[str, Path]:
    """One one-frame raw-camera drive per distortion model (full KITTI size, coarse LiDAR)."""
    roots = {}
    for model, options in DRIVES.items():
        root = tmp_path_factory.mktemp(f"raw_{model}")
        generate_dataset(root, drives=1, frames=1, seed=SEED, progress=False, lidar=LIDAR,
                         gt_neighbours=GT_NEIGHBOURS, **options)
        roots[model] = root
    return roots


def _split(root: Path) -> str:
    return json.loads((root / "synth_manifest.json").read_text())["drives"][0]["split"]


def _depth_png(root: Path, kind: str) -> np.ndarray:
    top = "data_depth_velodyne" if kind == "velodyne_raw" else "data_depth_annotated"
    return read_depth_png(root / top / _split(root) / DRIVE / "proj_depth" / kind / "image_02" / "0000000000.png")


def _lidar_to_raw(root: Path, camera: RawCamera) -> np.ndarray:
    lidar_to_rectified = geometry.load_kitti_calibration(root / "kitti_raw" / DATE).lidar_to_camera
    return geometry.make_transform(camera.R.T, np.zeros(3)) @ lidar_to_rectified


def _z_buffer(camera: RawCamera, points: np.ndarray) -> tuple[np.ndarray, float]:
    """Nearest depth per raw pixel of camera-frame points (z > 0.1) through RawCamera.project, written out
    here (not geometry.project); and the largest distance of a point's projection from its pixel's centre."""
    points = points[points[:, 2] > 0.1]
    u, v = camera.project(points)
    col, row = np.floor(u + 0.5), np.floor(v + 0.5)
    inside = (col >= 0) & (col < camera.width) & (row >= 0) & (row < camera.height)
    col, row, z = col[inside].astype(int), row[inside].astype(int), points[inside, 2]
    offset = float(np.max(np.maximum(np.abs(u[inside] - col), np.abs(v[inside] - row)))) if z.size else 0.0
    depth = np.full((camera.height, camera.width), np.inf)
    np.minimum.at(depth, (row, col), z)
    depth[np.isinf(depth)] = 0.0
    return depth, offset


# ------------------------------------------------------------------------------------ exact rendering
@pytest.mark.parametrize("model, D, R", [("plumb_bob", None, ROTATION), ("rational_polynomial", None, None),
                                         ("equidistant", None, None), ("plumb_bob", (0.12, 0.0, 0, 0, 0), None)])
def test_tiled_windows_render_exactly_what_a_brute_force_cast_does(rig, model, D, R):
    """The tiled culling drops no hit: a raw camera's cast equals, to the bit, intersecting every primitive
    with every ray (random primitives around the camera, some behind it and some straddling its plane; and
    the street scene through the full render)."""
    camera = rawcam.make_raw_camera(_small_rectified(), rawcam.RawCameraSpec(model, D, R))
    rays, tiles, _ = rawcam.camera_rays(camera)
    rng = np.random.default_rng(7)
    prims = [Primitive("box", (float(rng.uniform(-15, 25)), float(rng.uniform(-12, 12)), 1.0), (1.5, 0.8, 1.0), 0,
                       yaw=float(rng.uniform(0, np.pi))) for _ in range(25)]
    prims += [Primitive("cylinder", (float(rng.uniform(-15, 25)), float(rng.uniform(-12, 12)), 2.0), (0.3, 0.3, 2.0),
                        0) for _ in range(10)]
    prims += [Primitive("ellipsoid", (float(rng.uniform(-15, 25)), float(rng.uniform(-12, 12)), 3.0),
                        (1.5, 1.5, 2.0), 0) for _ in range(10)]
    prims += [Primitive("box", (0.0, 0.0, 1.5), (0.5, 3.0, 0.3), 0)]  # straddles the camera's z = 0 plane
    # The camera looks along world x from 1.6 m above the ground (optical frame: z forward, x right, y down).
    pose = geometry.make_transform(np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]]), (0.0, 0.0, 1.6))
    tiled = TiledCameraRays(rays, pose, 300.0, tiles=tiles)
    brute = _BruteForce(rays, pose, 300.0, tiles=tiles)
    a, b = cast(tiled, prims), cast(brute, prims)
    np.testing.assert_array_equal(a.t, b.t)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.normals, b.normals)
    assert (a.ids > 0).mean() > 0.3
    # Culling still culls: the windows of the scene's primitives cover a small part of the image on average.
    area = [sum((w[0].stop - w[0].start) * (w[1].stop - w[1].start) for w in tiled.windows(p)) for p in prims]
    assert np.mean(area) < 0.25 * camera.width * camera.height

    scene = build_scene(SEED, 1, 0.1)
    lidar_to_raw = rawcam.lidar_to_raw(camera, rig.lidar_to_camera)
    windowed = sensors.render_camera(scene, 0.1, camera, lidar_to_raw, np.random.default_rng(1), 3)
    original = TiledCameraRays.windows
    try:
        TiledCameraRays.windows = _BruteForce.windows
        whole = sensors.render_camera(scene, 0.1, camera, lidar_to_raw, np.random.default_rng(1), 3)
    finally:
        TiledCameraRays.windows = original
    for x, y in zip(windowed, whole):
        assert x.tobytes() == y.tobytes()


def test_pinhole_rays_tiled_equal_the_pinhole_grid(rig):
    """A raw camera without distortion is the pinhole camera: its tiled cast hits what CameraRays hits."""
    rectified = _small_rectified()
    camera = RawCamera.create(rectified)
    rays, tiles, _ = rawcam.camera_rays(camera)
    pinhole_rays = CameraRays.directions(rectified.width, rectified.height, rectified.K, np.eye(3))
    np.testing.assert_allclose(rays, pinhole_rays, rtol=0, atol=1e-12)
    scene = build_scene(SEED, 1, 0.0)
    pose = sensors.camera_pose(scene, 0.0, rig.lidar_to_camera)
    prims = scene.primitives_at(0.0)
    a = cast(TiledCameraRays(pinhole_rays, pose, 1000.0, tiles=tiles), prims, with_normals=False)
    b = cast(CameraRays(rectified.width, rectified.height, rectified.K, pose, 1000.0, dirs=pinhole_rays @
                        pose[:3, :3].T), prims, with_normals=False)
    np.testing.assert_array_equal(a.ids, b.ids)
    np.testing.assert_array_equal(a.t, b.t)


# ---------------------------------------------------------------------------------- the raw camera
def test_raw_intrinsics_keep_k_for_barrel_and_scale_for_pincushion():
    rectified = _small_rectified()
    barrel = rawcam.make_raw_camera(rectified, rawcam.RawCameraSpec("plumb_bob"))
    np.testing.assert_array_equal(barrel.K, rectified.K)
    pincushion = rawcam.RawCameraSpec("plumb_bob", (0.15, 0.02, 0.0, 0.0, 0.0))
    scale = rawcam.choose_focal_scale(rectified, pincushion)
    assert 0.5 < scale < 1.0
    camera = rawcam.make_raw_camera(rectified, pincushion)
    assert camera.K[0, 0] == pytest.approx(scale * rectified.fx) and camera.K[0, 2] == rectified.cx
    map_x, map_y = camera.rectify_maps()  # every rectified pixel is seen by the raw image ...
    assert map_x.min() >= 0 and map_x.max() <= camera.width - 1 and map_y.max() <= camera.height - 1
    grown = scale + 2e-3
    larger = RawCamera.create(rectified, "plumb_bob", pincushion.D,
                              K=[[grown * rectified.fx, 0, rectified.cx], [0, grown * rectified.fy, rectified.cy],
                                 [0, 0, 1]])
    with pytest.raises(ValueError, match="does not see the whole rectified image"):  # ... and s is the largest
        rawcam.check(larger)


def test_spec_parsing_and_errors(tmp_path):
    from depth_completion_ros import cli

    assert rawcam.parse_raw_camera("plumb_bob").D == (-0.3, 0.1, 0.0, 0.0, 0.0)
    assert rawcam.parse_raw_camera("plumb_bob:-0.3,0.1,0,0,0") == rawcam.RawCameraSpec("plumb_bob")
    assert len(rawcam.parse_raw_camera("rational_polynomial").D) == 8
    assert rawcam.parse_raw_camera("equidistant:0.01,0,0,0").D == (0.01, 0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="unknown distortion model"):
        rawcam.parse_raw_camera("fisheye")
    with pytest.raises(ValueError, match="takes 4"):
        rawcam.parse_raw_camera("equidistant:0.1,0.2")
    with pytest.raises(ValueError, match="numbers"):
        rawcam.parse_raw_camera("plumb_bob:a,b,c,d,e")
    with pytest.raises(ValueError, match="rotation"):
        rawcam.RawCameraSpec("plumb_bob", R=np.diag([1.0, 1.0, -1.0]))
    with pytest.raises(ValueError, match="folds|cannot be inverted"):  # a lens that folds inside the image
        rawcam.make_raw_camera(_small_rectified(), rawcam.RawCameraSpec("plumb_bob", (-1.2, 0.0, 0, 0, 0)))
    assert cli.main(["synth", "--out", str(tmp_path / "bad"), "--frames", "1", "--raw-camera", "plumb_bob:1,2",
                     "--no-progress"]) == 2
    # --help states each model's default coefficients.
    import argparse

    from depth_completion_ros.commands import synth as synth_command

    parser = argparse.ArgumentParser()
    synth_command.configure(parser)
    help_text = " ".join(parser.format_help().split())
    for model, D in rawcam.DEFAULT_DISTORTION.items():
        assert f"default {','.join(f'{v:g}' for v in D)}" in help_text.replace("- ", "-"), model


def test_cli_writes_a_raw_camera_drive(tmp_path, capsys):
    from depth_completion_ros import cli

    out = tmp_path / "cli"
    assert cli.main(["synth", "--out", str(out), "--frames", "1", "--seed", "2", "--raw-camera",
                     "equidistant:0.01,0,0,0", "--no-progress"]) == 0
    assert "raw camera: equidistant" in capsys.readouterr().out
    camera = raw_camera_of_drive(out, DRIVE)
    assert camera.model == "equidistant" and camera.D.tolist() == [0.01, 0.0, 0.0, 0.0]
    image = read_rgb_png(out / "kitti_raw" / DATE / DRIVE / "image_02" / "data" / "0000000000.png")
    assert image.shape == (375, 1242, 3)


def test_geometry_project_hook_is_the_pinhole_projection_without_distortion():
    rectified = _small_rectified()
    rng = np.random.default_rng(2)
    points = np.column_stack([rng.uniform(-20, 20, 4000), rng.uniform(-5, 5, 4000), rng.uniform(-5, 60, 4000)])
    expected, stats = geometry.project(points, rectified, return_stats=True)
    got, raw_stats = geometry.project(points, RawCamera.create(rectified), return_stats=True)
    np.testing.assert_array_equal(got, expected)
    assert raw_stats == stats
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="numpy"):
        geometry.project(torch.from_numpy(points), RawCamera.create(rectified))


# --------------------------------------------------------------------------------- raw-camera drives
@pytest.mark.parametrize("model", MODELS)
def test_calibration_manifest_and_reader_describe_the_raw_camera(raw_drives, model):
    root = raw_drives[model]
    manifest = json.loads((root / "synth_manifest.json").read_text())
    record = manifest["raw_camera"]
    camera = raw_camera_of_drive(root, DRIVE)
    assert isinstance(camera, RawCamera) and camera.model == record["model"] == model
    spec = rawcam.as_spec(DRIVES[model]["raw_camera"])
    assert record["D"] == list(spec.D)
    np.testing.assert_array_equal(camera.D, spec.D)
    np.testing.assert_array_equal(camera.R, spec.rotation)  # written with every digit: read back exactly
    rectified = geometry.load_kitti_calibration(root / "kitti_raw" / DATE).camera
    assert camera.rectified == rectified and (camera.width, camera.height) == (1242, 375)
    if model == "plumb_bob":
        # Turned by R, the rectified image's top and bottom edges would leave the raw image: the focal lengths
        # shrink (by the largest s that keeps them in, four decimals), the principal point stays.
        scale = record["focal_scale"]
        assert 0.98 < scale < 1.0 and scale == rawcam.choose_focal_scale(rectified, spec)
        expected = geometry.PinholeCamera(1242, 375, scale * rectified.fx, scale * rectified.fy, rectified.cx,
                                          rectified.cy)
        np.testing.assert_array_equal(camera.K, expected.K)
    else:  # barrel distortions without a rotation: the raw K is the rectified K
        np.testing.assert_array_equal(camera.K, rectified.K)
        assert record["focal_scale"] == 1.0
    np.testing.assert_array_equal(np.asarray(record["K"]).reshape(3, 3), camera.K)
    values = geometry.read_calib_file(root / "kitti_raw" / DATE / "calib_cam_to_cam.txt")
    assert values["D_02"].size == {"plumb_bob": 5, "rational_polynomial": 8, "equidistant": 4}[model]
    np.testing.assert_array_equal(values["S_02"], [1242, 375])
    np.testing.assert_array_equal(values["R_rect_02"].reshape(3, 3), spec.rotation)
    # R_02, T_02: the raw camera's pose relative to camera 00, consistent with the rectified rig.
    calibration = geometry.load_kitti_calibration(root / "kitti_raw" / DATE)
    cam0_to_raw = geometry.make_transform(values["R_02"], values["T_02"])
    np.testing.assert_allclose(cam0_to_raw @ calibration.velo_to_cam0, _lidar_to_raw(root, camera), atol=1e-12)
    assert KittiRawDrive(root / "kitti_raw", DRIVE).raw_camera.key() == camera.key()
    assert load_raw_camera(root / "kitti_raw" / DATE).key() == camera.key()
    # No selection crops of a raw camera (the equidistant drive is a val drive).
    assert _split(root) == ("val" if model == "equidistant" else "train")
    assert not (root / "data_depth_selection").exists()


def test_ordinary_drives_have_no_raw_camera(tmp_path):
    assert raw_camera_of_drive(tmp_path, DRIVE) is None  # no manifest: KITTI's own drives
    (tmp_path / "synth_manifest.json").write_text(json.dumps({"drives": [{"name": DRIVE}]}))
    assert raw_camera_of_drive(tmp_path, DRIVE) is None


@pytest.mark.parametrize("model", MODELS)
def test_sparse_depth_lands_where_the_raw_camera_projects(raw_drives, model):
    root = raw_drives[model]
    camera = raw_camera_of_drive(root, DRIVE)
    velo = np.fromfile(root / "kitti_raw" / DATE / DRIVE / "velodyne_points" / "data" / "0000000000.bin",
                       dtype="<f4").reshape(-1, 4)
    points = geometry.transform_points(_lidar_to_raw(root, camera), velo[:, :3].astype(np.float64))
    expected, offset = _z_buffer(camera, points)
    sparse = _depth_png(root, "velodyne_raw")
    assert offset <= 0.5  # each point's exact projection lies within half a pixel of its pixel's centre
    np.testing.assert_array_equal(sparse > 0, expected > 0)
    assert np.abs(sparse - expected)[sparse > 0].max() <= 1 / 256  # the PNG's 1/256 m steps
    assert (sparse > 0).sum() > 2000
    # Not the rectified grid: a pinhole projection of the same points puts most of them elsewhere.
    rectified = geometry.project(points, camera.rectified)
    assert ((rectified > 0) & (sparse > 0)).sum() < 0.7 * (sparse > 0).sum()


@pytest.mark.parametrize("model", MODELS)
def test_ground_truth_is_the_raw_exact_depth_where_accumulated_points_land(raw_drives, model):
    root = raw_drives[model]
    camera = raw_camera_of_drive(root, DRIVE)
    lidar_to_raw = _lidar_to_raw(root, camera)
    scene = build_scene(SEED, 1, 0.0)
    _, exact = sensors.render_camera(scene, 0.0, camera, lidar_to_raw, np.random.default_rng(0), 1)
    gt = _depth_png(root, "groundtruth")
    assert (gt > 0).mean() > 0.02
    assert np.abs(gt - exact)[gt > 0].max() <= 1 / 256  # the raw camera's exact depth, along its own axis
    # Where: the accumulated noise-free sweeps (frames -1, 0, 1) projected through the raw camera, nearest
    # point per pixel, kept where it agrees with the exact depth (writer.ground_truth's rule).
    sector = max(GT_SECTOR_DEG, rawcam.horizontal_half_fov_deg(camera) + 15.0)
    world = np.concatenate([sensors.exact_world_points(*sensors.scan_exact(scene, frame * 0.1, LIDAR, sector))
                            for frame in range(-GT_NEIGHBOURS, GT_NEIGHBOURS + 1)])
    world_to_raw = geometry.invert_transform(sensors.camera_pose(scene, 0.0, lidar_to_raw))
    accumulated, offset = _z_buffer(camera, geometry.transform_points(world_to_raw, world))
    assert offset <= 0.5
    agree = (accumulated > 0) & (exact > 0) & (np.abs(accumulated - exact) <= 0.05 + 0.03 * exact)
    np.testing.assert_array_equal(gt > 0, agree)
    # The writer's own rule through the hook gives the same image.
    np.testing.assert_array_equal(ground_truth(exact, rawcam.RawProjection(camera), world_to_raw, world) > 0, agree)


@pytest.mark.parametrize("model", MODELS)
def test_raw_image_rectifies_onto_the_rectified_render(raw_drives, model):
    """The rays of the raw pixels hit the scene where the rectified render says: rectifying the raw image
    (OpenCV's maps, as image_proc) gives the rectified camera's render of the same instant."""
    import cv2

    from depth_completion_ros.raw_camera import depth_in_raw_grid

    root = raw_drives[model]
    camera = raw_camera_of_drive(root, DRIVE)
    raw = read_rgb_png(root / "kitti_raw" / DATE / DRIVE / "image_02" / "data" / "0000000000.png")
    calibration = geometry.load_kitti_calibration(root / "kitti_raw" / DATE)
    scene = build_scene(SEED, 1, 0.0)
    texture_seed = int(np.random.default_rng([SEED, 1, 7]).integers(2 ** 31))
    rendered, rectified_depth = sensors.render_camera(scene, 0.0, calibration.camera, calibration.lidar_to_camera,
                                                      np.random.default_rng(0), texture_seed)
    map_x, map_y = camera.rectify_maps()
    rectified = cv2.remap(raw, map_x, map_y, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
    difference = np.abs(rectified.astype(float) - rendered.astype(float)).mean()
    unrectified = np.abs(raw.astype(float) - rendered.astype(float)).mean()
    assert difference < 4.0, difference
    assert unrectified > 3 * difference  # the raw image itself is far from the rectified one
    # Depth too: the rectified exact depth seen from the raw pixels (along the raw axis) is the raw depth.
    _, raw_depth = sensors.render_camera(scene, 0.0, camera, _lidar_to_raw(root, camera), np.random.default_rng(0),
                                         texture_seed)
    resampled = depth_in_raw_grid(rectified_depth, camera)
    both = (resampled > 0) & (raw_depth > 0)
    assert both.mean() > 0.5
    assert np.median(np.abs(resampled[both] - raw_depth[both]) / raw_depth[both]) < 0.002


# ------------------------------------------------------------------------------------------ kitti2bag
@pytest.mark.parametrize("model", MODELS)
def test_kitti2bag_writes_the_raw_camera_info(raw_drives, model, tmp_path, capsys):
    from depth_completion_ros import cli
    from depth_completion_ros.data import messages as m
    from depth_completion_ros.data.rosbag import read_bag

    root = raw_drives[model]
    camera = raw_camera_of_drive(root, DRIVE)
    bag_path = tmp_path / "bag"
    assert cli.main(["kitti2bag", "--kitti-root", str(root), "--drive", DRIVE, "--out", str(bag_path)]) == 0
    assert "raw camera" in capsys.readouterr().out
    topics: dict[str, list] = {}
    for message in read_bag(bag_path):
        topics.setdefault(message.topic, []).append(message.msg)
    (info,), (image,), (gt,) = (topics[f"/kitti/camera_color_left/{name}"]
                                for name in ("camera_info", "image_raw", "depth_gt"))
    (tf,) = topics["/tf_static"]
    assert info.distortion_model == model and info.header.frame_id == "camera_color_left"
    np.testing.assert_array_equal(info.d, camera.D)
    np.testing.assert_array_equal(info.k, camera.K.reshape(-1))
    np.testing.assert_array_equal(info.r, camera.R.reshape(-1))
    np.testing.assert_array_equal(info.p, camera.rectified.P.reshape(-1))  # p = [K_rect | 0]
    from_bag = RawCamera.from_camera_info(info)
    assert from_bag.key() == camera.key() and from_bag.model == camera.model
    png = root / "kitti_raw" / DATE / DRIVE / "image_02" / "data" / "0000000000.png"
    np.testing.assert_array_equal(m.rgb_from_image(image), read_rgb_png(png))
    np.testing.assert_array_equal(m.depth_from_image(gt), _depth_png(root, "groundtruth"))
    poses = {(t.header.frame_id, t.child_frame_id): m.transform_from_msg(t) for t in tf.transforms}
    lidar_to_image = np.linalg.inv(poses[("base_link", "camera_color_left")]) @ poses[("base_link", "velo_link")]
    np.testing.assert_allclose(lidar_to_image, _lidar_to_raw(root, camera), atol=1e-6)
    if model == "plumb_bob":  # the raw camera's frame is turned by R from the rectified one's
        lidar_to_rectified = geometry.load_kitti_calibration(root / "kitti_raw" / DATE).lidar_to_camera
        assert np.abs(lidar_to_image - lidar_to_rectified).max() > 1e-3
    # Told not to, the bag keeps the rectified layout.
    from depth_completion_ros.data.rosbag import write_kitti_drive_bag

    write_kitti_drive_bag(KittiRawDrive(root / "kitti_raw", DRIVE), tmp_path / "plain", raw_camera=None)
    plain = next(msg.msg for msg in read_bag(tmp_path / "plain", ["/kitti/camera_color_left/camera_info"]))
    assert not np.any(plain.d) and np.array_equal(plain.k, camera.rectified.K.reshape(-1))


# ----------------------------------------------------------------------------- the pipeline on raw cameras
@pytest.fixture(scope="module")
def rectified_twin(tmp_path_factory) -> Path:
    """The raw drives' scene and LiDAR with the ordinary rectified camera 02: the reference."""
    root = tmp_path_factory.mktemp("rectified_twin")
    generate_dataset(root, drives=1, frames=1, seed=SEED, progress=False, lidar=LIDAR, gt_neighbours=GT_NEIGHBOURS)
    return root


@pytest.fixture(scope="module")
def default_engine():
    from depth_completion_ros.model_zoo import resolve_engine

    return resolve_engine("default", device="cpu")


def _bag_rmse(root: Path, engine, rectify: str, out: Path) -> dict:
    from depth_completion_ros.data.rosbag import write_kitti_drive_bag
    from depth_completion_ros.evaluation.bag_eval import evaluate_bag
    from depth_completion_ros.pipeline import FrameProcessor, PipelineOptions

    out.mkdir(parents=True)
    write_kitti_drive_bag(KittiRawDrive(root / "kitti_raw", DRIVE), out / "bag", depth_root=root)
    return evaluate_bag(out / "bag", FrameProcessor(engine, options=PipelineOptions(rectify=rectify)), out / "report",
                        panels=0, progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_the_shipped_model_on_a_raw_camera_bag_scores_like_on_the_rectified_one(
        raw_drives, rectified_twin, default_engine, model, tmp_path):
    """The same frame through the raw camera (rectified by the pipeline, scored in the raw grid where the rectified
    camera sees) and through the rectified camera: RMSE within 15 %; with the distortion ignored, far worse."""
    reference = _bag_rmse(rectified_twin, default_engine, "auto", tmp_path / "rectified")
    rectified = _bag_rmse(raw_drives[model], default_engine, "auto", tmp_path / "raw")
    assert rectified["rectified_frames"] == rectified["frames_scored"] == 1
    assert rectified["rmse_mm"] <= 1.15 * reference["rmse_mm"], (rectified["rmse_mm"], reference["rmse_mm"])
    if model == "plumb_bob":  # KITTI-like barrel distortion: ignoring it costs much more than 15 %
        ignored = _bag_rmse(raw_drives[model], default_engine, "false", tmp_path / "ignored")
        assert ignored["unrectified_raw_camera_frames"] == 1
        assert ignored["rmse_mm"] > 1.3 * reference["rmse_mm"], (ignored["rmse_mm"], reference["rmse_mm"])


def test_training_and_eval_kitti_refuse_a_raw_camera_drive(raw_drives):
    from depth_completion_ros.data.kitti import KittiDepthCompletion

    with pytest.raises(ValueError, match="raw .*camera 02.*dcros eval-bag"):
        KittiDepthCompletion(raw_drives["rational_polynomial"], split=_split(raw_drives["rational_polynomial"]))
