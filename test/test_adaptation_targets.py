"""Accumulated training targets (adaptation.targets): exact on a static scene, moving objects removed."""
import numpy as np
import pytest

from depth_completion_ros.adaptation.targets import accumulate, beam_gap_rows, confirmed_by, frame_neighbours
from depth_completion_ros.geometry import PinholeCamera, make_transform, project

CAMERA = PinholeCamera(width=160, height=64, fx=80.0, fy=80.0, cx=79.5, cy=31.5)
# LiDAR x forward, y left, z up -> camera x right, y down, z forward; the camera 0.3 m below the LiDAR.
LIDAR_TO_CAMERA = make_transform(np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]]), (0.0, -0.3, 0.0))


def sweep(lidar_x: float, boxes, beams: int = 16, wall_x: float = 30.0) -> np.ndarray:
    """Exact returns (N, 3) in the LiDAR frame of a LiDAR at (lidar_x, 0, 0) facing +x: a wall at world
    x = wall_x and fronto-parallel boxes (x_front, y0, y1, z0, z1) in front of it."""
    elevations = np.radians(np.linspace(-12.0, 6.0, beams))
    azimuths = np.radians(np.arange(-45.0, 45.0, 0.25))
    elevation, azimuth = np.meshgrid(elevations, azimuths, indexing="ij")
    directions = np.stack([np.cos(elevation) * np.cos(azimuth), np.cos(elevation) * np.sin(azimuth),
                           np.sin(elevation)], -1).reshape(-1, 3)
    distance = (wall_x - lidar_x) / directions[:, 0]
    for x_front, y0, y1, z0, z1 in boxes:
        t = (x_front - lidar_x) / directions[:, 0]
        y, z = t * directions[:, 1], t * directions[:, 2]
        hit = (t > 0) & (y >= y0) & (y <= y1) & (z >= z0) & (z <= z1) & (t < distance)
        distance = np.where(hit, t, distance)
    return directions * distance[:, None]


def pose(x: float) -> np.ndarray:
    return make_transform(np.eye(3), (x, 0.0, 0.0))


def test_static_scene_accumulates_to_the_exact_depth():
    positions = [0.0, 0.8, 1.6, 2.4, 3.2]  # the vehicle drives towards the wall
    box = (12.0, -1.0, 1.5, -1.0, 0.8)  # a static box, 12 m ahead in the world
    scans = [sweep(x, [box]) for x in positions]
    own = 2
    neighbours = [(j - own, scans[j], pose(positions[j])) for j in frame_neighbours(own, len(scans), 2)]
    sweep_only = project(scans[own], CAMERA, LIDAR_TO_CAMERA)
    target, stats = accumulate(sweep_only, pose(positions[own]), neighbours, CAMERA, LIDAR_TO_CAMERA)
    assert stats.target_pixels > 1.4 * np.count_nonzero(sweep_only)  # the neighbours fill the gaps between beams
    assert stats.unconfirmed == 0 or stats.unconfirmed < 0.05 * stats.neighbour_points
    # Every target pixel holds the exact depth of the surface it shows: the wall or the box front,
    # both fronto-parallel, so one depth each in frame `own`'s camera.
    wall, front = 30.0 - positions[own], 12.0 - positions[own]
    values = target[target > 0]
    assert np.all(np.isclose(values, wall, atol=1e-4) | np.isclose(values, front, atol=1e-4))
    assert np.count_nonzero(np.isclose(values, front, atol=1e-4)) > 0
    # The box's front never shows behind the wall's pixels far from its silhouette, and the wall never
    # shows through the box (hidden points were dropped).
    rows, cols = np.nonzero(target)
    box_pixels = np.isclose(target[rows, cols], front, atol=1e-4)
    box_rows, box_cols = rows[box_pixels], cols[box_pixels]
    inner = (rows > box_rows.min() + 2) & (rows < box_rows.max() - 2) & (cols > box_cols.min() + 2) & \
        (cols < box_cols.max() - 2)
    assert np.all(np.isclose(target[rows[inner], cols[inner]], front, atol=1e-4))


def test_a_moving_object_is_removed_from_the_targets():
    positions = [0.0, 0.8, 1.6, 2.4, 3.2]
    # A car crossing from left to right at 10 m: at frame j it spans y in [c_j - 1, c_j + 1].
    centres = [6.0, 3.0, 0.0, -3.0, -6.0]
    scans = [sweep(x, [(10.0 + x, c - 1.0, c + 1.0, -1.0, 0.5)]) for x, c in zip(positions, centres)]
    own = 2
    neighbours = [(j - own, scans[j], pose(positions[j])) for j in frame_neighbours(own, len(scans), 2)]
    target, stats = accumulate(project(scans[own], CAMERA, LIDAR_TO_CAMERA), pose(positions[own]), neighbours,
                               CAMERA, LIDAR_TO_CAMERA)
    wall = 30.0 - positions[own]
    # The car is 10 m ahead in frame `own` and spans y in [-1, 1]: its columns in the image.
    half_width_px = CAMERA.fx * 1.0 / 10.0
    # Where the car was in the other frames, frame `own` sees the wall: nothing nearer may be left there.
    rows, cols = np.nonzero((target > 0) & (target < wall - 1.0))
    assert rows.size > 0  # the car itself is kept
    assert np.all(np.abs(cols - CAMERA.cx) <= half_width_px + 3)
    assert stats.unconfirmed > 0
    # Without the check the other frames' car points would be kept where the wall is.
    unchecked = np.zeros_like(target)
    for _, points_j, pose_j in neighbours:
        transform = LIDAR_TO_CAMERA @ np.linalg.inv(pose(positions[own])) @ pose_j
        depth = project(points_j, CAMERA, transform)
        unchecked = np.where((depth > 0) & ((unchecked == 0) | (depth < unchecked)), depth, unchecked)
    rows, cols = np.nonzero((unchecked > 0) & (unchecked < wall - 1.0))
    assert np.any(np.abs(cols - CAMERA.cx) > half_width_px + 10)


def test_confirmation_needs_an_agreeing_return_within_the_window():
    own = np.zeros((20, 20), np.float32)
    own[5, 5] = 10.0
    rows, cols = np.array([5, 7, 5, 15]), np.array([6, 5, 5, 15])
    depth = np.array([10.2, 10.0, 12.0, 10.0], np.float32)
    confirmed = confirmed_by(own, rows, cols, depth, half_height=2, half_width=2)
    # within the window and the tolerance (0.05 + 3 % of 10 m = 0.35 m); too far in depth; too far away
    assert confirmed.tolist() == [True, True, False, False]


def test_beam_gap_and_neighbour_selection():
    sparse = np.zeros((40, 10), np.float32)
    sparse[::5] = 1.0
    assert beam_gap_rows(sparse) == pytest.approx(5.0)
    assert frame_neighbours(0, 5, 2) == [1, 2]
    assert frame_neighbours(3, 5, 2, allowed={0, 1, 2}) == [1, 2]
