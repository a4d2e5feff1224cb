"""The OXTS RT3003 GPS/IMU of the synthetic drives: KITTI's 30-value packets, derived from the ego motion.

A drive's world (x along the street, y left, z up) is laid on the map near Karlsruhe: the street points at
a compass heading drawn per drive, and the first packet of the drive sits at a drawn latitude/longitude.
Positions go through the spherical Mercator projection that the KITTI devkit and pykitti invert
(`pose_from_oxts_packet`: scale = cos(latitude of the first packet), earth radius 6378137 m), so a reader
(`data.oxts`, whose projection this module shares) recovers the IMU trajectory to the precision of the
printed digits. Orientation is KITTI's R = Rz(yaw) Ry(pitch) Rx(roll) of the IMU frame (x forward, y left,
z up) in east-north-up.

Positions, orientation and velocities are exact (KITTI's come from an RTK-corrected inertial solution);
the accelerometer and gyro readings carry a little white noise. Accelerations are specific forces, as an
accelerometer measures them: a level IMU at rest reads az = +g.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

# The reading side lives with the readers; mercator, rotx, roty, parse_packet and pose_from_packet are kept
# importable from here for the synthetic world's own modules and tests.
from depth_completion_ros.data.oxts import (  # noqa: F401
    EARTH_RADIUS,
    FIELDS,
    mercator,
    parse_packet,
    pose_from_packet,
    rotx,
    roty,
    rotz,
)

GRAVITY = 9.81  # m/s^2
ORIGIN_LAT, ORIGIN_LON = 49.0, 8.4  # deg: Karlsruhe, where KITTI was recorded
ACCEL_NOISE = 0.03  # m/s^2, white noise on ax..au
GYRO_NOISE = 0.002  # rad/s, white noise on wx..wu
DIFF_STEP = 1e-3  # s: central differences of the pose for velocity, acceleration and angular rate

# oxts/dataformat.txt as KITTI ships it in every drive (two slips of the original are corrected: the third
# acceleration is az, and pos_accuracy is a position accuracy).
DATAFORMAT = """\
lat:   latitude of the oxts-unit (deg)
lon:   longitude of the oxts-unit (deg)
alt:   altitude of the oxts-unit (m)
roll:  roll angle (rad),    0 = level, positive = left side up,      range: -pi   .. +pi
pitch: pitch angle (rad),   0 = level, positive = front down,        range: -pi/2 .. +pi/2
yaw:   heading (rad),       0 = east,  positive = counter clockwise, range: -pi   .. +pi
vn:    velocity towards north (m/s)
ve:    velocity towards east (m/s)
vf:    forward velocity, i.e. parallel to earth-surface (m/s)
vl:    leftward velocity, i.e. parallel to earth-surface (m/s)
vu:    upward velocity, i.e. perpendicular to earth-surface (m/s)
ax:    acceleration in x, i.e. in direction of vehicle front (m/s^2)
ay:    acceleration in y, i.e. in direction of vehicle left (m/s^2)
az:    acceleration in z, i.e. in direction of vehicle top (m/s^2)
af:    forward acceleration (m/s^2)
al:    leftward acceleration (m/s^2)
au:    upward acceleration (m/s^2)
wx:    angular rate around x (rad/s)
wy:    angular rate around y (rad/s)
wz:    angular rate around z (rad/s)
wf:    angular rate around forward axis (rad/s)
wl:    angular rate around leftward axis (rad/s)
wu:    angular rate around upward axis (rad/s)
pos_accuracy:  position accuracy (north/east in m)
vel_accuracy:  velocity accuracy (north/east in m/s)
navstat:       navigation status (see navstat_to_string)
numsats:       number of satellites tracked by primary GPS receiver
posmode:       position mode of primary GPS receiver (see gps_mode_to_string)
velmode:       velocity mode of primary GPS receiver (see gps_mode_to_string)
orimode:       orientation mode of primary GPS receiver (see gps_mode_to_string)
"""
NAVSTAT_READY = 4  # the inertial solution is locked
GPS_MODE_RTK_INTEGER = 6


@dataclass(frozen=True)
class GeoReference:
    """Where a drive's world lies on the map. `lat`, `lon`: the first packet's position (deg); `ground_alt`:
    altitude of the world's ground plane z = 0 (m); `heading`: ENU yaw of the world's x axis (rad, 0 = east,
    counter-clockwise); `numsats`, `pos_accuracy`, `vel_accuracy`: the receiver's state during the drive."""

    lat: float
    lon: float
    ground_alt: float
    heading: float
    numsats: int
    pos_accuracy: float
    vel_accuracy: float

    @property
    def world_to_enu(self) -> np.ndarray:
        """3x3 rotation of world vectors into east-north-up."""
        return rotz(self.heading)


def draw_reference(rng: np.random.Generator) -> GeoReference:
    """A drive's place on the map near Karlsruhe and its receiver state. Latitude and longitude are rounded
    to 1e-7 deg (~1 cm) so that they print exactly and a reader's Mercator scale is the writer's."""
    return GeoReference(
        lat=round(ORIGIN_LAT + float(rng.uniform(-0.02, 0.02)), 7),
        lon=round(ORIGIN_LON + float(rng.uniform(-0.03, 0.03)), 7),
        ground_alt=round(float(rng.uniform(110.0, 120.0)), 3),
        heading=float(rng.uniform(-np.pi, np.pi)),
        numsats=int(rng.integers(7, 13)),
        pos_accuracy=float(rng.uniform(0.02, 0.06)),
        vel_accuracy=float(rng.uniform(0.01, 0.03)),
    )


def euler_from_rotation(rotation: np.ndarray) -> tuple[float, float, float]:
    """(roll, pitch, yaw) with rotation = Rz(yaw) Ry(pitch) Rx(roll), KITTI's OXTS convention."""
    r = np.asarray(rotation, dtype=np.float64)
    pitch = float(np.arcsin(np.clip(-r[2, 0], -1.0, 1.0)))
    return float(np.arctan2(r[2, 1], r[2, 2])), pitch, float(np.arctan2(r[1, 0], r[0, 0]))


def _writer_mercator(lat: float, lon: float, scale: float) -> tuple[float, float]:
    """`mercator` in the order of operations the generator has always used: the devkit's order (the reader's)
    rounds differently in the last bit, which moves the 14th digit of ~1 % of the written latitudes and
    longitudes, so the files of a seed would change."""
    x = scale * np.radians(lon) * EARTH_RADIUS
    y = scale * EARTH_RADIUS * np.log(np.tan(np.radians(90.0 + lat) / 2.0))
    return float(x), float(y)


def inverse_mercator(x: float, y: float, scale: float) -> tuple[float, float]:
    """(lat, lon) in degrees of Mercator metres: the inverse of `mercator`."""
    lon = np.degrees(x / (scale * EARTH_RADIUS))
    lat = np.degrees(2.0 * np.arctan(np.exp(y / (scale * EARTH_RADIUS)))) - 90.0
    return float(lat), float(lon)


def _vee(skew: np.ndarray) -> np.ndarray:
    return 0.5 * np.array([skew[2, 1] - skew[1, 2], skew[0, 2] - skew[2, 0], skew[1, 0] - skew[0, 1]])


def packets(imu_pose: Callable[[float], np.ndarray], times: list[float], reference: GeoReference,
            rngs: list[np.random.Generator]) -> np.ndarray:
    """(len(times), 30) OXTS packets of the IMU whose 4x4 IMU -> world pose at time t is `imu_pose(t)`.

    The first time is the reference's latitude/longitude; `rngs` (one per time) draw the sensor noise.
    """
    if len(rngs) != len(times):
        raise ValueError(f"need one noise generator per time, got {len(rngs)} for {len(times)} times")
    world_to_enu = reference.world_to_enu
    scale = np.cos(np.radians(reference.lat))
    origin_x, origin_y = _writer_mercator(reference.lat, reference.lon, scale)
    first_position = imu_pose(times[0])[:3, 3] if times else np.zeros(3)
    gravity = np.array([0.0, 0.0, GRAVITY])
    h = DIFF_STEP
    rows = []
    for index, (time, rng) in enumerate(zip(times, rngs)):
        before, now, after = imu_pose(time - h), imu_pose(time), imu_pose(time + h)
        east, north, _ = world_to_enu @ (now[:3, 3] - first_position)
        # The first packet is the reference itself (a round trip through the projection would lose an ulp).
        lat, lon = (reference.lat, reference.lon) if index == 0 else inverse_mercator(origin_x + east,
                                                                                      origin_y + north, scale)
        alt = reference.ground_alt + now[2, 3]
        rotation = world_to_enu @ now[:3, :3]  # IMU -> ENU
        roll, pitch, yaw = euler_from_rotation(rotation)
        level = rotz(yaw)  # forward-left-up axes: the heading, parallel to the earth's surface
        velocity = world_to_enu @ (after[:3, 3] - before[:3, 3]) / (2 * h)
        acceleration = world_to_enu @ (after[:3, 3] - 2 * now[:3, 3] + before[:3, 3]) / (h * h)
        rate = world_to_enu @ _vee((after[:3, :3] - before[:3, :3]) / (2 * h) @ now[:3, :3].T)
        # The sensors measure in the IMU's own axes; the level-frame readings are those rotated.
        force_body = rotation.T @ (acceleration + gravity) + rng.normal(0.0, ACCEL_NOISE, 3)
        rate_body = rotation.T @ rate + rng.normal(0.0, GYRO_NOISE, 3)
        body_to_level = level.T @ rotation
        wander = rng.normal(0.0, 0.05, 2)  # the receiver's accuracy estimates drift a little
        rows.append([
            lat, lon, alt, roll, pitch, yaw, velocity[1], velocity[0], *(level.T @ velocity),
            *force_body, *(body_to_level @ force_body), *rate_body, *(body_to_level @ rate_body),
            reference.pos_accuracy * (1.0 + wander[0]), reference.vel_accuracy * (1.0 + wander[1]),
            NAVSTAT_READY, reference.numsats, GPS_MODE_RTK_INTEGER, GPS_MODE_RTK_INTEGER, GPS_MODE_RTK_INTEGER,
        ])
    return np.array(rows, dtype=np.float64).reshape(len(times), len(FIELDS))


def format_packet(packet: np.ndarray) -> str:
    """One line of an oxts/data/*.txt file: 25 reals with 14 significant digits, then 5 integers."""
    packet = np.asarray(packet, dtype=np.float64).reshape(-1)
    if packet.size != len(FIELDS):
        raise ValueError(f"an OXTS packet has {len(FIELDS)} values, got {packet.size}")
    reals = " ".join(f"{value:.14g}" for value in packet[:25])
    return reals + " " + " ".join(str(int(round(value))) for value in packet[25:])
