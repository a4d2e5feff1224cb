"""A deterministic procedural street: road, kerbs and sidewalks, buildings, cars, poles, trees, pedestrians.

World frame: x along the street (the ego vehicle drives towards +x), y to the left, z up, ground z = 0.
Traffic keeps to the right: the ego lane is y in [-3.5, 0], the oncoming lane y in [0, 3.5], parking lanes
and then kerbs at |y| = 6. Everything is drawn from a numpy Generator seeded with (seed, drive index).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from depth_completion_ros.data.synth.raycast import Primitive

# Material ids (what the shading and the LiDAR reflectance look up).
GROUND, SIDEWALK, FACADE, CAR_BODY, CAR_GLASS, POLE, TRUNK, FOLIAGE, CLOTHING, SKIN = range(10)
MATERIAL_NAMES = ("ground", "sidewalk", "facade", "car_body", "car_glass", "pole", "trunk", "foliage",
                  "clothing", "skin")

LANE_WIDTH = 3.5
PARKING_WIDTH = 2.5
ROAD_HALF_WIDTH = LANE_WIDTH + PARKING_WIDTH  # kerb line
KERB_HEIGHT = 0.12
FRAME_PERIOD = 0.1  # s, KITTI's 10 Hz
_SIDEWALK_SEGMENT = 40.0  # m: long slabs are split so that culling stays tight
# Appended only: a kind's index seeds its stream, so existing kinds keep their draws.
_STREAMS = ("ego", "sidewalk", "buildings", "parked", "poles", "trees", "pedestrians", "oncoming", "ahead", "sun",
            "rig")
DEFAULT_MOUNT_HEIGHT = 1.73  # m, the KITTI Velodyne above the ground
# Per-drive variety (build_scene(variety=True)): what other cars, sensors and days look like.
VARIETY_BEAMS = (32, 64, 128)
VARIETY_MOUNT_HEIGHT = (1.45, 2.05)  # m: a low sedan roof rack to a van's
VARIETY_MOUNT_PITCH_DEG = (-3.0, 3.0)  # positive = tilted down (OXTS convention)
VARIETY_SUN_ELEVATION_DEG = (8.0, 75.0)  # low evening sun to noon
VARIETY_AMBIENT = (0.10, 0.40)  # sky light: overcast-dark to bright
VARIETY_EXPOSURE = (0.55, 1.6)  # camera gain: under- to over-exposed
VARIETY_IMAGE_NOISE = (0.6, 4.0)  # sensor noise, grey levels (sigma)

_FACADE_COLOURS = np.array([
    [0.62, 0.36, 0.28], [0.72, 0.66, 0.55], [0.55, 0.55, 0.58], [0.80, 0.76, 0.68], [0.52, 0.30, 0.24],
    [0.70, 0.62, 0.45], [0.45, 0.47, 0.50], [0.78, 0.72, 0.60],
])
_CAR_COLOURS = np.array([
    [0.75, 0.75, 0.78], [0.08, 0.08, 0.09], [0.55, 0.05, 0.05], [0.10, 0.18, 0.45], [0.90, 0.90, 0.88],
    [0.35, 0.36, 0.38], [0.15, 0.30, 0.18], [0.60, 0.50, 0.30],
])
_CLOTHING_COLOURS = np.array([
    [0.10, 0.10, 0.12], [0.20, 0.25, 0.45], [0.55, 0.15, 0.12], [0.40, 0.40, 0.40], [0.70, 0.65, 0.50],
])


@dataclass(frozen=True)
class Mover:
    """Primitives that translate together at a constant velocity (m/s) along the ground."""

    parts: tuple[Primitive, ...]  # positions at time 0
    velocity: tuple[float, float]

    def at(self, time: float) -> list[Primitive]:
        """The parts at `time` seconds after the drive's first frame."""
        dx, dy = self.velocity[0] * time, self.velocity[1] * time
        return [part.moved(dx, dy) for part in self.parts]


@dataclass(frozen=True)
class EgoMotion:
    """The ego vehicle's path: constant speed along x, a gentle lane-keeping sway in y."""

    speed: float  # m/s
    lane_y: float
    sway_amplitude: float  # m
    sway_frequency: float  # rad/s
    sway_phase: float

    def pose(self, time: float) -> np.ndarray:
        """4x4 vehicle (base, on the ground) -> world at `time` seconds after the drive's first frame."""
        x = self.speed * time
        y = self.lane_y + self.sway_amplitude * np.sin(self.sway_frequency * time + self.sway_phase)
        dy_dx = self.sway_amplitude * self.sway_frequency * np.cos(self.sway_frequency * time + self.sway_phase)
        yaw = np.arctan2(dy_dx, self.speed)
        c, s = np.cos(yaw), np.sin(yaw)
        pose = np.eye(4)
        pose[:2, :2] = [[c, -s], [s, c]]
        pose[:2, 3] = (x, y)
        return pose


@dataclass
class Scene:
    """Static primitives, movers and the ego path of one drive, plus the lighting."""

    static: list[Primitive]
    movers: list[Mover]
    ego: EgoMotion
    sun_direction: np.ndarray  # unit vector towards the sun (world)
    x_range: tuple[float, float]
    stats: dict = field(default_factory=dict)
    # The sensor rig (LiDAR with the cameras rigidly attached, KITTI's calibration between them) on the car.
    mount_height: float = DEFAULT_MOUNT_HEIGHT  # m, LiDAR above the ground
    mount_pitch: float = 0.0  # rad, positive = tilted down
    lidar_beams: int | None = None  # None: the generator's LiDAR model as given
    rig_id: int | None = None  # which rig of a varied world (drives sharing one have the same id)
    # The camera and the light: ambient sky light, gain, sensor noise (grey levels).
    ambient: float = 0.25
    exposure: float = 1.0
    image_noise: float = 1.2

    def rig(self) -> dict:
        """The drive's rig and light, as the manifest records them."""
        elevation = float(np.degrees(np.arcsin(np.clip(self.sun_direction[2], -1.0, 1.0))))
        shared = {} if self.rig_id is None else {"rig_id": self.rig_id}
        return {**shared, "lidar_beams": self.lidar_beams, "mount_height_m": round(self.mount_height, 4),
                "mount_pitch_deg": round(float(np.degrees(self.mount_pitch)), 4),
                "sun_elevation_deg": round(elevation, 3), "ambient": round(self.ambient, 4),
                "exposure": round(self.exposure, 4), "image_noise": round(self.image_noise, 4)}

    def primitives_at(self, time: float) -> list[Primitive]:
        """Every primitive at `time` (seconds after the first frame)."""
        moving = [part for mover in self.movers for part in mover.at(time)]
        return self.static + moving


def _box(x0, x1, y0, y1, z0, z1, material, color, yaw=0.0) -> Primitive:
    return Primitive("box", ((x0 + x1) / 2, (y0 + y1) / 2, (z0 + z1) / 2),
                     ((x1 - x0) / 2, (y1 - y0) / 2, (z1 - z0) / 2), material, tuple(map(float, color)), yaw)


def _car(rng: np.random.Generator, x: float, y: float, yaw: float) -> list[Primitive]:
    """Body + cabin of a car centred at (x, y), heading `yaw`."""
    length, width = rng.uniform(3.9, 4.8), rng.uniform(1.7, 1.9)
    body_bottom, body_top = 0.28, rng.uniform(0.9, 1.05)
    cabin_top = body_top + rng.uniform(0.42, 0.55)
    colour = _CAR_COLOURS[rng.integers(len(_CAR_COLOURS))] * rng.uniform(0.9, 1.05)
    cabin_length = length * rng.uniform(0.45, 0.55)
    cabin_shift = -length * 0.08  # cabins sit a little behind the centre
    c, s = np.cos(yaw), np.sin(yaw)
    body = Primitive("box", (x, y, (body_bottom + body_top) / 2), (length / 2, width / 2, (body_top - body_bottom) / 2),
                     CAR_BODY, tuple(colour), yaw)
    cabin = Primitive("box", (x + c * cabin_shift, y + s * cabin_shift, (body_top + cabin_top) / 2),
                      (cabin_length / 2, width * 0.43, (cabin_top - body_top) / 2), CAR_GLASS, tuple(colour), yaw)
    return [body, cabin]


def _pedestrian(rng: np.random.Generator, x: float, y: float) -> list[Primitive]:
    height = rng.uniform(1.55, 1.9)
    radius = rng.uniform(0.17, 0.24)
    head = height * 0.075
    body_top = height - 2 * head
    clothes = _CLOTHING_COLOURS[rng.integers(len(_CLOTHING_COLOURS))]
    return [
        Primitive("cylinder", (x, y, body_top / 2), (radius, radius, body_top / 2), CLOTHING, tuple(clothes)),
        Primitive("ellipsoid", (x, y, body_top + head), (head, head, head * 1.15), SKIN, (0.76, 0.56, 0.45)),
    ]


def _unit_vector(azimuth: float, elevation: float) -> np.ndarray:
    """The world direction at this azimuth (from +x towards +y) and elevation (up from the ground), radians."""
    return np.array([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth), np.sin(elevation)])


def _stream(seed: int, drive_index: int, name: str, side: int = 0) -> np.random.Generator:
    # One generator per drive, object kind and side: a longer drive only appends objects further along the
    # street, and changing one kind's rules leaves the others' draws alone.
    return np.random.default_rng([int(seed), int(drive_index), 0x5CE7E, _STREAMS.index(name), side + 1])


def _draw_mount(rng: np.random.Generator) -> tuple[int, float, float]:
    """LiDAR beams, mount height (m) and pitch (rad): the first draws of a drive's "rig" stream."""
    beams = int(rng.choice(VARIETY_BEAMS))
    height = float(rng.uniform(*VARIETY_MOUNT_HEIGHT))
    pitch = float(np.radians(rng.uniform(*VARIETY_MOUNT_PITCH_DEG)))
    return beams, height, pitch


def rig_group(drive_index: int, drives_per_rig: int = 1) -> tuple[int, int]:
    """(rig id, first drive of that rig) of drive `drive_index` (1-based) when consecutive groups of
    `drives_per_rig` drives share one rig: drives 1..N are rig 1, N+1..2N rig 2, ..."""
    if int(drives_per_rig) != drives_per_rig or drives_per_rig < 1:
        raise ValueError(f"drives_per_rig must be a positive integer, got {drives_per_rig!r}")
    if int(drive_index) != drive_index or drive_index < 1:
        raise ValueError(f"drive indices start at 1, got {drive_index!r}")
    rig_id = (int(drive_index) - 1) // int(drives_per_rig) + 1
    return rig_id, (rig_id - 1) * int(drives_per_rig) + 1


def build_scene(seed: int, drive_index: int, duration: float, margin: float = 160.0, variety: bool = False,
                drives_per_rig: int = 1, rig_beams: int | None = None) -> Scene:
    """The street of drive `drive_index`, long enough for `duration` seconds of driving plus `margin` metres
    of scenery behind the start and ahead of the end (the LiDAR sees 120 m).

    `variety` also draws the drive's rig and light (its own random stream: the street is the same either
    way): LiDAR beams (VARIETY_BEAMS), mount height and pitch, sun elevation, ambient light, camera
    exposure and sensor noise. Without it every drive has KITTI's rig and the default camera.

    With variety, `drives_per_rig` consecutive drives share one rig (`rig_group`): its LiDAR beams, mount
    height and pitch are those drawn for the group's first drive, while each drive keeps its own street and
    light; the scene's `rig_id` names the group. `rig_beams` (one of VARIETY_BEAMS) gives every rig that
    many beams and leaves the other draws as they are. The defaults draw exactly what they always did."""
    if duration < 0:
        raise ValueError(f"duration must be >= 0 s, got {duration}")
    if not variety and drives_per_rig != 1:
        raise ValueError(f"drives_per_rig={drives_per_rig!r} needs variety (drives only have rigs of their own "
                         "with --variety)")
    if not variety and rig_beams is not None:
        raise ValueError(f"rig_beams={rig_beams!r} needs variety (drives only have rigs of their own with --variety)")
    if rig_beams is not None and rig_beams not in VARIETY_BEAMS:
        raise ValueError(f"rig_beams must be one of {list(VARIETY_BEAMS)}, got {rig_beams!r}")
    rig_id, first_drive = rig_group(drive_index, drives_per_rig) if variety else (None, drive_index)

    def stream(name: str, side: int = 0) -> np.random.Generator:
        return _stream(seed, drive_index, name, side)

    rng = stream("ego")
    ego = EgoMotion(speed=float(rng.uniform(6.0, 11.0)), lane_y=-LANE_WIDTH / 2,
                    sway_amplitude=float(rng.uniform(0.05, 0.25)), sway_frequency=float(rng.uniform(0.2, 0.6)),
                    sway_phase=float(rng.uniform(0, 2 * np.pi)))
    # The street's far end is rounded up so that drives of similar length share the same world.
    x_min = -margin
    x_max = float(np.ceil((ego.speed * duration + margin + 100.0) / 100.0) * 100.0)
    static: list[Primitive] = []
    movers: list[Mover] = []
    counts = dict.fromkeys(("buildings", "parked_cars", "moving_cars", "poles", "trees", "pedestrians"), 0)

    for side in (-1, 1):
        sidewalk_width = float(stream("sidewalk", side).uniform(2.5, 4.0))
        inner, outer = ROAD_HALF_WIDTH, ROAD_HALF_WIDTH + sidewalk_width
        y0, y1 = (inner, outer) if side > 0 else (-outer, -inner)
        for x0 in np.arange(x_min, x_max, _SIDEWALK_SEGMENT):
            static.append(_box(x0, min(x0 + _SIDEWALK_SEGMENT, x_max), y0, y1, 0.0, KERB_HEIGHT, SIDEWALK,
                               (0.58, 0.57, 0.55)))
        # Buildings: a row of boxes with random widths, gaps, set-backs and heights.
        rng = stream("buildings", side)
        x = x_min
        while x < x_max:
            width = float(rng.uniform(8.0, 26.0))
            if rng.random() < 0.25:
                x += float(rng.uniform(3.0, 10.0))  # a gap (courtyard, side street)
            front = outer + float(rng.uniform(0.0, 2.5))
            depth, height = float(rng.uniform(8.0, 16.0)), float(rng.uniform(6.5, 22.0))
            colour = _FACADE_COLOURS[rng.integers(len(_FACADE_COLOURS))] * rng.uniform(0.85, 1.1)
            yb0, yb1 = (front, front + depth) if side > 0 else (-front - depth, -front)
            static.append(_box(x, x + width, yb0, yb1, 0.0, height, FACADE, np.clip(colour, 0, 1)))
            counts["buildings"] += 1
            x += width
        # Parked cars in the parking lane.
        rng = stream("parked", side)
        x = x_min + float(rng.uniform(0, 8))
        parked_y = side * (LANE_WIDTH + PARKING_WIDTH / 2)
        while x < x_max:
            if rng.random() < 0.7:
                static.extend(_car(rng, x, parked_y + float(rng.uniform(-0.15, 0.15)), float(rng.normal(0, 0.03))))
                counts["parked_cars"] += 1
                x += float(rng.uniform(5.2, 8.0))
            else:
                x += float(rng.uniform(6.0, 20.0))
        # Street lamps: pole + lamp head over the road edge.
        rng = stream("poles", side)
        x = x_min + float(rng.uniform(0, 20))
        pole_y = side * (inner + 0.45)
        while x < x_max:
            height = float(rng.uniform(6.0, 8.0))
            radius = float(rng.uniform(0.07, 0.11))
            static.append(Primitive("cylinder", (x, pole_y, height / 2), (radius, radius, height / 2), POLE,
                                    (0.42, 0.43, 0.45)))
            head_y = pole_y - side * 0.8
            static.append(_box(x - 0.25, x + 0.25, min(pole_y, head_y) - 0.1, max(pole_y, head_y) + 0.1,
                               height - 0.15, height + 0.05, POLE, (0.30, 0.31, 0.33)))
            counts["poles"] += 1
            x += float(rng.uniform(22.0, 38.0))
        # Trees on the sidewalk near the kerb.
        rng = stream("trees", side)
        x = x_min + float(rng.uniform(0, 10))
        while x < x_max:
            if rng.random() < 0.6:
                tree_y = side * (inner + float(rng.uniform(0.9, 1.4)))
                trunk_height, trunk_radius = float(rng.uniform(2.2, 3.5)), float(rng.uniform(0.12, 0.22))
                crown_r, crown_h = float(rng.uniform(1.4, 2.4)), float(rng.uniform(1.8, 3.0))
                static.append(Primitive("cylinder", (x, tree_y, trunk_height / 2),
                                        (trunk_radius, trunk_radius, trunk_height / 2), TRUNK, (0.30, 0.21, 0.13)))
                green = np.array([0.16, 0.33, 0.10]) * rng.uniform(0.8, 1.2)
                static.append(Primitive("ellipsoid", (x, tree_y, trunk_height + 0.8 * crown_h),
                                        (crown_r, crown_r, crown_h), FOLIAGE, tuple(np.clip(green, 0, 1))))
                counts["trees"] += 1
            x += float(rng.uniform(9.0, 18.0))
        # Pedestrians on the sidewalk, most of them walking along it.
        rng = stream("pedestrians", side)
        x = x_min + float(rng.exponential(20.0))
        while x < x_max:
            py = side * (inner + float(rng.uniform(1.6, sidewalk_width - 0.3)))
            speed = float(rng.choice([-1, 1]) * rng.uniform(0.8, 1.6)) if rng.random() < 0.7 else 0.0
            # Pedestrians stand on the sidewalk slab.
            parts = tuple(Primitive(p.kind, (p.center[0], p.center[1], p.center[2] + KERB_HEIGHT), p.half_size,
                                    p.material, p.color, p.yaw) for p in _pedestrian(rng, x, py))
            movers.append(Mover(parts, (speed, 0.0)))
            counts["pedestrians"] += 1
            x += float(rng.exponential(20.0))

    # Moving traffic: oncoming cars at one common speed (they never drive into each other), and a queue
    # ahead in the ego lane a little faster than the ego.
    rng = stream("oncoming")
    speed = float(rng.uniform(8.0, 12.0))
    x = x_min + 40.0 + float(rng.uniform(0.0, 40.0))
    while x < x_max:
        parts = tuple(_car(rng, x, LANE_WIDTH / 2 + float(rng.uniform(-0.2, 0.2)), np.pi))
        movers.append(Mover(parts, (-speed, 0.0)))
        counts["moving_cars"] += 1
        x += float(rng.uniform(20.0, 70.0))
    rng = stream("ahead")
    gap, speed = 0.0, ego.speed + float(rng.uniform(0.0, 1.0))
    for _ in range(int(rng.integers(1, 3))):
        gap += float(rng.uniform(14.0, 40.0))
        parts = tuple(_car(rng, gap, -LANE_WIDTH / 2 + float(rng.uniform(-0.15, 0.15)), 0.0))
        movers.append(Mover(parts, (speed, 0.0)))
        counts["moving_cars"] += 1

    rng = stream("sun")
    sun_azimuth, sun_elevation = rng.uniform(0, 2 * np.pi), rng.uniform(np.radians(30), np.radians(60))
    scene = Scene(static, movers, ego, _unit_vector(sun_azimuth, sun_elevation), (float(x_min), float(x_max)), counts)
    if variety:
        rng = stream("rig")
        scene.lidar_beams, scene.mount_height, scene.mount_pitch = _draw_mount(rng)
        scene.sun_direction = _unit_vector(sun_azimuth, np.radians(rng.uniform(*VARIETY_SUN_ELEVATION_DEG)))
        scene.ambient = float(rng.uniform(*VARIETY_AMBIENT))
        # Log-uniform: as many drives darker as brighter than the default gain.
        scene.exposure = float(np.exp(rng.uniform(*np.log(VARIETY_EXPOSURE))))
        scene.image_noise = float(rng.uniform(*VARIETY_IMAGE_NOISE))
        scene.rig_id = rig_id
        if first_drive != drive_index:
            # The group's first drive's stream, read in the same order, gives the same sensor and mount.
            scene.lidar_beams, scene.mount_height, scene.mount_pitch = _draw_mount(_stream(seed, first_drive, "rig"))
        if rig_beams is not None:
            scene.lidar_beams = int(rig_beams)
    return scene
