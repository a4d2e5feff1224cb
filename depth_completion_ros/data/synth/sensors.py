"""The KITTI sensor rig: the four rectified cameras (00/01 grey, 02/03 colour), a Velodyne HDL-64E and the
OXTS GPS/IMU, with KITTI's real calibration.

The calibration is the one published with the KITTI raw recordings of 2011_09_26 (calib_cam_to_cam.txt,
calib_velo_to_cam.txt, calib_imu_to_velo.txt). The Velodyne sits 1.73 m above the ground; the calibration
puts camera 00 0.27 m ahead of it and 0.08 m lower, camera 02 6 cm to the left of camera 00, cameras 01 and
03 0.54 m to the right of 00 and 02 (the stereo baselines), and the IMU 0.81 m behind the Velodyne, 0.32 m
to its left and 0.80 m lower. The rectified cameras share one orientation and one K; they differ only by
their position, which `load_kitti_calibration` folds into each camera's LiDAR -> camera transform.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from depth_completion_ros import geometry
from depth_completion_ros.data.synth import materials, rawcam
from depth_completion_ros.data.synth.raycast import NO_HIT, CameraRays, LidarRays, TiledCameraRays, cast
from depth_completion_ros.data.synth.oxts import roty
from depth_completion_ros.data.synth.scene import DEFAULT_MOUNT_HEIGHT, Scene

IMAGE_WIDTH, IMAGE_HEIGHT = 1242, 375  # S_rect_02
LIDAR_HEIGHT = DEFAULT_MOUNT_HEIGHT  # m above the ground (KITTI setup; a varied drive has its own)
RAW_CAMERAS = ("00", "01", "02", "03")  # grey left, grey right, colour left, colour right
GREY_CAMERAS = ("00", "01")
_LUMA = (0.2126, 0.7152, 0.0722)  # Rec. 709 weights of linear RGB: what a monochrome sensor integrates


def _m(values: str) -> np.ndarray:
    return np.array(values.split(), dtype=np.float64)


# calib_cam_to_cam.txt of 2011_09_26 (cameras 00, 01: grey; 02, 03: colour).
KITTI_CAMERAS = {
    "00": dict(S=_m("1392 512"), K=_m("9.842439e+02 0 6.900000e+02 0 9.808141e+02 2.331966e+02 0 0 1"),
               D=_m("-3.728755e-01 2.037299e-01 2.219027e-03 1.383707e-03 -7.233722e-02"),
               R=np.eye(3), T=np.zeros(3), S_rect=_m("1242 375"), R_rect=None,
               P_rect=_m("7.215377e+02 0 6.095593e+02 0 0 7.215377e+02 1.728540e+02 0 0 0 1 0")),
    "01": dict(S=_m("1392 512"), K=_m("9.895267e+02 0 7.020000e+02 0 9.878386e+02 2.455590e+02 0 0 1"),
               D=_m("-3.644661e-01 1.790019e-01 1.148107e-03 -6.298563e-04 -5.314062e-02"),
               R=_m("9.993513e-01 1.860866e-02 -3.083487e-02 -1.887662e-02 9.997863e-01 -8.421873e-03 "
                    "3.067156e-02 8.998467e-03 9.994890e-01"),
               T=_m("-5.370000e-01 4.822061e-03 -1.252488e-02"), S_rect=_m("1242 375"),
               R_rect=_m("9.996878e-01 -8.976826e-03 2.331651e-02 8.876121e-03 9.999508e-01 4.418952e-03 "
                         "-2.335499e-02 -4.210612e-03 9.997184e-01"),
               P_rect=_m("7.215377e+02 0 6.095593e+02 -3.875744e+02 0 7.215377e+02 1.728540e+02 0 0 0 1 0")),
    "02": dict(S=_m("1392 512"), K=_m("9.597910e+02 0 6.960217e+02 0 9.569251e+02 2.241806e+02 0 0 1"),
               D=_m("-3.691481e-01 1.968681e-01 1.353473e-03 5.677587e-04 -6.770705e-02"),
               R=_m("9.999758e-01 -5.267463e-03 -4.552439e-03 5.251945e-03 9.999804e-01 -3.413835e-03 "
                    "4.570332e-03 3.389843e-03 9.999838e-01"),
               T=_m("5.956621e-02 2.900141e-04 2.577209e-03"), S_rect=_m("1242 375"),
               R_rect=_m("9.998817e-01 1.511453e-02 -2.841595e-03 -1.511724e-02 9.998853e-01 -9.338510e-04 "
                         "2.827154e-03 9.766976e-04 9.999955e-01"),
               P_rect=_m("7.215377e+02 0 6.095593e+02 4.485728e+01 0 7.215377e+02 1.728540e+02 2.163791e-01 "
                         "0 0 1 2.745884e-03")),
    "03": dict(S=_m("1392 512"), K=_m("9.037596e+02 0 6.957519e+02 0 9.019653e+02 2.242509e+02 0 0 1"),
               D=_m("-3.639558e-01 1.788651e-01 6.029694e-04 -3.922424e-04 -5.382460e-02"),
               R=_m("9.995599e-01 1.699522e-02 -2.431313e-02 -1.704422e-02 9.998531e-01 -1.809756e-03 "
                    "2.427880e-02 2.223358e-03 9.997028e-01"),
               T=_m("-4.731050e-01 5.551470e-03 -5.250882e-03"), S_rect=_m("1242 375"),
               R_rect=_m("9.998321e-01 -7.193136e-03 1.685599e-02 7.232804e-03 9.999712e-01 -2.293585e-03 "
                         "-1.683901e-02 2.415116e-03 9.998553e-01"),
               P_rect=_m("7.215377e+02 0 6.095593e+02 -3.395242e+02 0 7.215377e+02 1.728540e+02 2.199936e+00 "
                         "0 0 1 2.729905e-03")),
}
R_RECT_00 = _m("9.999239e-01 9.837760e-03 -7.445048e-03 -9.869795e-03 9.999421e-01 -4.278459e-03 "
               "7.402527e-03 4.351614e-03 9.999631e-01").reshape(3, 3)
VELO_TO_CAM0 = geometry.make_transform(
    _m("7.533745e-03 -9.999714e-01 -6.166020e-04 1.480249e-02 7.280733e-04 -9.998902e-01 "
       "9.998621e-01 7.523790e-03 1.480755e-02"),
    _m("-4.069766e-03 -7.631618e-02 -2.717806e-01"),
)
IMU_TO_VELO = geometry.make_transform(
    _m("9.999976e-01 7.553071e-04 -2.035826e-03 -7.854027e-04 9.998898e-01 -1.482298e-02 "
       "2.024406e-03 1.482454e-02 9.998881e-01"),
    _m("-8.086759e-01 3.195559e-01 -7.997231e-01"),
)


def write_calibration(date_dir: str | Path) -> geometry.KittiCalibration:
    """Write the three KITTI calibration files into a raw date folder; returns camera 02's calibration
    read back from them (so the projection uses exactly what the files say)."""
    cameras = {}
    for name, fields in KITTI_CAMERAS.items():
        fields = dict(fields)
        fields["R_rect"] = R_RECT_00 if fields["R_rect"] is None else fields["R_rect"]
        cameras[name] = fields
    geometry.write_kitti_calibration(date_dir, cameras, R_RECT_00, VELO_TO_CAM0, IMU_TO_VELO,
                                     calib_time="01-Jan-2000 00:00:00")
    return geometry.load_kitti_calibration(date_dir, camera="02")


def camera_calibrations(date_dir: str | Path) -> dict[str, geometry.KittiCalibration]:
    """Each rectified camera ("00".."03") with the Velodyne, read back from a date folder's files."""
    return {code: geometry.load_kitti_calibration(date_dir, camera=code) for code in RAW_CAMERAS}


# ------------------------------------------------------------------------------------------- LiDAR
def hdl64_elevations_deg() -> np.ndarray:
    """The 64 beam elevations of an HDL-64E, ascending: the lower block (32 beams, -24.9 .. -8.83 deg,
    ~0.52 deg apart) and the denser upper block (32 beams, -8.33 .. +2.0 deg, ~1/3 deg apart)."""
    return np.concatenate([np.linspace(-24.9, -8.83, 32), np.linspace(-8.33, 2.0, 32)])


def hdl32_elevations_deg() -> np.ndarray:
    """The 32 beam elevations of an HDL-32E, ascending: -30.67 .. +10.67 deg, 4/3 deg apart."""
    return np.linspace(-30.67, 10.67, 32)


def lidar128_elevations_deg() -> np.ndarray:
    """128 beams over a VLS-128's span, -25 .. +15 deg, evenly (0.31 deg apart; the real sensor packs them
    more densely near the horizon)."""
    return np.linspace(-25.0, 15.0, 128)


BEAM_LAYOUTS = {32: hdl32_elevations_deg, 64: hdl64_elevations_deg, 128: lidar128_elevations_deg}


@dataclass(frozen=True)
class VelodyneModel:
    """A spinning LiDAR of `beams` beams (BEAM_LAYOUTS: 64 = KITTI's HDL-64E). `columns` azimuth steps per
    turn: 2083 is the HDL-64E at 10 Hz (1.33 M points/s / 10 Hz / 64 beams, ~0.173 deg), which projects
    onto ~5 % of KITTI's image."""

    columns: int = 2000
    max_range: float = 120.0
    min_range: float = 0.9
    range_noise: float = 0.02  # m, Gaussian along the beam
    dropout: float = 0.03  # fraction of returns lost at random
    dark_dropout: float = 0.35  # extra loss on dark surfaces (reflectance < 0.1: glass, tyres)
    beams: int = 64

    def __post_init__(self):
        if self.beams not in BEAM_LAYOUTS:
            raise ValueError(f"beams must be one of {sorted(BEAM_LAYOUTS)}, got {self.beams!r}")
        if self.columns < 16:
            raise ValueError(f"a LiDAR needs at least 16 azimuth columns, got {self.columns}")
        if not 0 < self.min_range < self.max_range:
            raise ValueError(f"need 0 < min_range < max_range, got {self.min_range}, {self.max_range}")
        if self.range_noise < 0 or not 0 <= self.dropout < 1 or not 0 <= self.dark_dropout < 1:
            raise ValueError("range_noise must be >= 0 and drop-out fractions in [0, 1)")

    @property
    def elevations(self) -> np.ndarray:
        """Beam elevations in radians, ascending."""
        return np.radians(BEAM_LAYOUTS[self.beams]())


def lidar_pose(scene: Scene, time: float) -> np.ndarray:
    """4x4 Velodyne -> world at `time`: the rig at the scene's mount height, pitched by its mount pitch."""
    return scene.ego.pose(time) @ geometry.make_transform(roty(scene.mount_pitch), (0.0, 0.0, scene.mount_height))


def imu_pose(scene: Scene, time: float) -> np.ndarray:
    """4x4 IMU (OXTS unit) -> world at `time`: the Velodyne's pose through calib_imu_to_velo."""
    return lidar_pose(scene, time) @ IMU_TO_VELO


def scan_exact(scene: Scene, time: float, model: VelodyneModel, sector_deg: float | None = None):
    """Noise-free ray cast of one sweep (the scene frozen at `time`, as KITTI's synced, motion-compensated
    sweep would be). Returns (grid, hits); with `sector_deg`, only azimuths within +-sector_deg of forward."""
    pose = lidar_pose(scene, time)
    if sector_deg is None:
        grid = LidarRays(model.elevations, model.columns, pose, model.max_range)
    else:
        half = int(np.ceil(np.radians(sector_deg) / (2 * np.pi / model.columns)))
        grid = LidarRays(model.elevations, model.columns, pose, model.max_range, -half, 2 * half + 1)
    hits = cast(grid, scene.primitives_at(time), with_normals=sector_deg is None)
    hits.t[hits.t < model.min_range] = np.inf
    hits.ids[~np.isfinite(hits.t)] = NO_HIT
    return grid, hits


def exact_world_points(grid: LidarRays, hits) -> np.ndarray:
    """(N, 3) world points of the returns of an exact scan."""
    valid = hits.ids != NO_HIT
    return grid.origin + hits.t[valid][:, None] * grid.dirs[valid]


def scan_velodyne(scene: Scene, time: float, model: VelodyneModel, rng: np.random.Generator,
                  texture_seed: int) -> np.ndarray:
    """One sweep as KITTI stores it: (N, 4) float32 x, y, z, reflectance in the Velodyne frame, in firing
    order (azimuth, then beam), with Gaussian range noise and drop-outs."""
    grid, hits = scan_exact(scene, time, model)
    # Firing order: column by column, beams bottom to top within a column.
    t = hits.t.T.reshape(-1)
    ids = hits.ids.T.reshape(-1)
    local_dirs = grid.local_dirs.transpose(1, 0, 2).reshape(-1, 3)
    world_dirs = grid.dirs.transpose(1, 0, 2).reshape(-1, 3)
    normals = hits.normals.transpose(1, 0, 2).reshape(-1, 3)
    valid = ids != NO_HIT
    t, ids, local_dirs, world_dirs, normals = t[valid], ids[valid], local_dirs[valid], world_dirs[valid], normals[valid]
    points_world = grid.origin + t[:, None] * world_dirs
    albedo, reflectance = materials.appearance(points_world, normals, ids, scene.primitives_at(time), texture_seed)
    # Returns weaken at grazing incidence.
    cosine = np.abs(np.einsum("ij,ij->i", normals, world_dirs))
    intensity = reflectance * (0.35 + 0.65 * cosine)
    intensity = np.clip(intensity + rng.normal(0.0, 0.01, len(t)), 0.0, 1.0)
    noisy_range = t + rng.normal(0.0, model.range_noise, len(t))
    keep_probability = 1.0 - model.dropout - np.where(reflectance < 0.1, model.dark_dropout, 0.0)
    keep = (rng.random(len(t)) < keep_probability) & (noisy_range > model.min_range) & (noisy_range < model.max_range)
    xyz = local_dirs[keep] * noisy_range[keep, None]
    return np.concatenate([xyz, intensity[keep, None]], axis=1).astype(np.float32)


# ------------------------------------------------------------------------------------------ camera
def camera_pose(scene: Scene, time: float, lidar_to_camera: np.ndarray) -> np.ndarray:
    """4x4 camera -> world at `time` (the rectified camera; the raw one given its `rawcam.lidar_to_raw`)."""
    return lidar_pose(scene, time) @ geometry.invert_transform(lidar_to_camera)


_LAST_VIEW: list = [None]  # (key, ray directions, sky colours) of the last camera view (see _view)


def _view(camera, rotation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ray directions (H, W, 3) and sky colours (H, W, 3) of a camera with this K, size and orientation (a
    PinholeCamera; or a RawCamera, through its raw pixels: `rawcam.camera_rays`).

    The rectified cameras share K and orientation, so the four cameras of one instant reuse the last view
    (read-only arrays) instead of recomputing it. The entry is one tuple, read and replaced whole, so
    concurrent renders never mix two views.
    """
    pinhole = isinstance(camera, geometry.PinholeCamera)
    key = (camera if pinhole else camera.key(), np.asarray(rotation, dtype=np.float64).tobytes())
    entry = _LAST_VIEW[0]
    if entry is None or entry[0] != key:
        if pinhole:
            dirs = CameraRays.directions(camera.width, camera.height, camera.K, rotation)
        else:
            dirs = rawcam.camera_rays(camera)[0] @ np.asarray(rotation, dtype=np.float64).T
        # Sky: brighter and paler towards the horizon.
        elevation = np.clip(dirs[..., 2] / np.linalg.norm(dirs, axis=-1), 0.0, 1.0)[..., None]
        sky = np.array([0.75, 0.85, 0.95]) * (1 - elevation) + np.array([0.30, 0.50, 0.85]) * elevation
        dirs.setflags(write=False)
        sky.setflags(write=False)
        entry = (key, dirs, sky)
        _LAST_VIEW[0] = entry
    return entry[1], entry[2]


def render_camera(scene: Scene, time: float, camera, lidar_to_camera: np.ndarray,
                  rng: np.random.Generator, texture_seed: int, max_depth: float = 1000.0, grey: bool = False):
    """Render the rectified colour image and its exact depth.

    Returns (rgb (H, W, 3) uint8, depth (H, W) float32 in metres along the optical axis, 0 = sky); with
    `grey`, the image is the (H, W) uint8 of a monochrome camera (the luminance of the same light).
    Shading: Lambertian sun + ambient sky light, distance haze, the scene's exposure, gamma 2.2, sensor noise
    (the scene's ambient, exposure and image_noise).

    `camera` is a rectified geometry.PinholeCamera, or a raw_camera.RawCamera: then the image and the depth
    are those of the raw camera's pixels, one exact ray cast through each (depth along the raw camera's axis),
    and `lidar_to_camera` maps into the raw camera's frame (`rawcam.lidar_to_raw`).
    """
    pose = camera_pose(scene, time, lidar_to_camera)
    dirs, sky = _view(camera, pose[:3, :3])
    if isinstance(camera, geometry.PinholeCamera):
        grid = CameraRays(camera.width, camera.height, camera.K, pose, max_depth, dirs=dirs)
    else:
        local_rays, tiles, _ = rawcam.camera_rays(camera)
        grid = TiledCameraRays(local_rays, pose, max_depth, tiles=tiles, dirs=dirs)
    primitives = scene.primitives_at(time)
    hits = cast(grid, primitives)
    hit = hits.ids != NO_HIT
    points = grid.origin + hits.t[hit][:, None] * grid.dirs[hit]
    normals = hits.normals[hit]
    albedo, _ = materials.appearance(points, normals, hits.ids[hit], primitives, texture_seed)
    sun = float(np.clip(scene.sun_direction[2], 0, 1))
    lambert = np.clip(normals @ scene.sun_direction, 0.0, None)
    sky_light = 0.5 + 0.5 * normals[:, 2]  # surfaces facing up see more of the sky
    linear = albedo * (0.9 * lambert + scene.ambient + 0.2 * sky_light)[:, None] * (0.8 + 0.2 * sun)
    image = sky.copy()
    haze = 1.0 - np.exp(-hits.t[hit] / 400.0)
    image[hit] = linear * (1 - haze[:, None]) + sky[hit] * haze[:, None]
    if grey:
        image = image[..., 0] * _LUMA[0] + image[..., 1] * _LUMA[1] + image[..., 2] * _LUMA[2]
    if scene.exposure != 1.0:
        image = image * scene.exposure
    encoded = np.clip(image, 0.0, 1.0) ** (1 / 2.2) * 255.0 + rng.normal(0.0, scene.image_noise, image.shape)
    rgb = np.clip(np.round(encoded), 0, 255).astype(np.uint8)
    depth = np.where(hit, hits.t, 0.0).astype(np.float32)
    return rgb, depth
