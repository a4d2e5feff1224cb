"""Exact, vectorised ray casting against analytic primitives.

All rays of one sensor share one origin, so a primitive can be culled to the sub-grid of rays whose
directions can reach its bounding prism (a pixel window for the camera, a beam x azimuth window for the
LiDAR). The loop runs over primitives (hundreds); everything inside it is numpy over rays. A camera with
arbitrary per-pixel rays (a lens-distorted raw camera, `TiledCameraRays`) culls by tiles of pixels whose
rays' normalised coordinates are bounded once (`RayTiles`); its windows are as conservative as the pinhole's.

Primitives (world frame: x along the street, y left, z up; the ground is the plane z = 0):
- box: centre, half extents in its own frame, yaw about z (an oriented box standing upright);
- cylinder: vertical, centre (x, y, z mid-height), half_size = (radius, radius, half height);
- ellipsoid: axis-aligned, centre, half_size = the three radii (a sphere when they are equal).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

GROUND_ID = 0  # hit id of the ground plane; primitive k has hit id k + 1; -1 = no hit
NO_HIT = -1
_EPS_T = 1e-6  # hits closer than this along the ray are ignored (the origin itself)
_TINY = 1e-12  # replaces zero direction components so that slab divisions stay finite


@dataclass(frozen=True)
class Primitive:
    """One solid of the scene, with what the shading and the LiDAR need to know about its surface."""

    kind: str  # "box" | "cylinder" | "ellipsoid"
    center: tuple[float, float, float]
    half_size: tuple[float, float, float]
    material: int
    color: tuple[float, float, float] = (0.5, 0.5, 0.5)
    yaw: float = 0.0  # boxes only

    def __post_init__(self):
        if self.kind not in ("box", "cylinder", "ellipsoid"):
            raise ValueError(f"unknown primitive kind {self.kind!r} (box, cylinder, ellipsoid)")
        if min(self.half_size) <= 0:
            raise ValueError(f"{self.kind} half sizes must be positive, got {self.half_size}")

    def moved(self, dx: float, dy: float) -> "Primitive":
        """The same primitive translated in the ground plane."""
        cx, cy, cz = self.center
        return Primitive(self.kind, (cx + dx, cy + dy, cz), self.half_size, self.material, self.color, self.yaw)

    def prism_corners(self) -> np.ndarray:
        """(8, 3) corners of the upright prism that bounds the primitive."""
        hx, hy, hz = self.half_size
        yaw = self.yaw if self.kind == "box" else 0.0
        c, s = np.cos(yaw), np.sin(yaw)
        local = np.array([[sx * hx, sy * hy, sz * hz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        rotated = np.stack([c * local[:, 0] - s * local[:, 1], s * local[:, 0] + c * local[:, 1], local[:, 2]], 1)
        return rotated + np.asarray(self.center)

    def footprint_distance(self, x: float, y: float) -> float:
        """Horizontal distance from (x, y) to the prism's footprint rectangle (0 inside it)."""
        hx, hy, _ = self.half_size
        yaw = self.yaw if self.kind == "box" else 0.0
        c, s = np.cos(yaw), np.sin(yaw)
        dx, dy = x - self.center[0], y - self.center[1]
        lx, ly = c * dx + s * dy, -s * dx + c * dy
        return float(np.hypot(max(abs(lx) - hx, 0.0), max(abs(ly) - hy, 0.0)))


@dataclass
class RayHits:
    """Nearest hit per ray: `t` (ray parameter; inf = no hit) and `ids` (GROUND_ID, primitive index + 1, NO_HIT)."""

    t: np.ndarray
    ids: np.ndarray
    normals: np.ndarray | None = field(default=None)


class RayGrid:
    """Rays from one origin laid out on a 2-D grid, with a method that culls a primitive to a window."""

    origin: np.ndarray  # (3,) world
    dirs: np.ndarray  # (R, C, 3) world, not necessarily unit length
    max_t: float  # hits with larger t are dropped

    def windows(self, primitive: Primitive) -> list[tuple[slice, slice]]:  # pragma: no cover - interface
        """(rows, cols) slices of the rays that may hit `primitive`; every other ray surely misses it."""
        raise NotImplementedError


# ------------------------------------------------------------------------------- intersections
def _intersect_box(origin, dirs, prim: Primitive) -> np.ndarray:
    c, s = np.cos(prim.yaw), np.sin(prim.yaw)
    rel = origin - np.asarray(prim.center)
    lo = (c * rel[0] + s * rel[1], -s * rel[0] + c * rel[1], rel[2])
    dx, dy, dz = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    # Slab test axis by axis on (R, C) planes: reductions over a trailing axis of 3 are slow in numpy.
    # The arithmetic is the same per element as a stacked (R, C, 3) version, so the hits are identical.
    t_near = t_far = None
    for axis, ld in enumerate((c * dx + s * dy, -s * dx + c * dy, dz)):
        ld = np.where(np.abs(ld) < _TINY, _TINY, ld)
        inv = 1.0 / ld
        half = prim.half_size[axis]
        t1 = (-half - lo[axis]) * inv
        t2 = (half - lo[axis]) * inv
        near, far = np.minimum(t1, t2), np.maximum(t1, t2)
        t_near = near if t_near is None else np.maximum(t_near, near)
        t_far = far if t_far is None else np.minimum(t_far, far)
    hit = (t_near <= t_far) & (t_near > _EPS_T)
    return np.where(hit, t_near, np.inf)


def _intersect_cylinder(origin, dirs, prim: Primitive) -> np.ndarray:
    radius, _, half_height = prim.half_size
    cx, cy, cz = prim.center
    ox, oy, oz = origin[0] - cx, origin[1] - cy, origin[2] - cz
    dx, dy, dz = dirs[..., 0], dirs[..., 1], dirs[..., 2]
    a = dx * dx + dy * dy
    b = 2.0 * (ox * dx + oy * dy)
    c = ox * ox + oy * oy - radius * radius
    disc = b * b - 4.0 * a * c
    with np.errstate(invalid="ignore", divide="ignore"):
        t_side = (-b - np.sqrt(disc)) / (2.0 * a)
        z_side = oz + t_side * dz
        side_ok = (disc >= 0) & (a > _TINY) & (t_side > _EPS_T) & (np.abs(z_side) <= half_height)
        t = np.where(side_ok, t_side, np.inf)
        safe_dz = np.where(np.abs(dz) < _TINY, _TINY, dz)
        for cap_z in (half_height, -half_height):
            t_cap = (cap_z - oz) / safe_dz
            px, py = ox + t_cap * dx, oy + t_cap * dy
            cap_ok = (t_cap > _EPS_T) & (px * px + py * py <= radius * radius)
            t = np.where(cap_ok & (t_cap < t), t_cap, t)
    return t


def _intersect_ellipsoid(origin, dirs, prim: Primitive) -> np.ndarray:
    radii = np.asarray(prim.half_size)
    o = (origin - np.asarray(prim.center)) / radii
    d = dirs / radii
    a = np.einsum("...i,...i->...", d, d)
    b = 2.0 * (d @ o)
    c = float(o @ o) - 1.0
    disc = b * b - 4.0 * a * c
    with np.errstate(invalid="ignore"):
        t = (-b - np.sqrt(disc)) / (2.0 * a)
    return np.where((disc >= 0) & (t > _EPS_T), t, np.inf)


_INTERSECT = {"box": _intersect_box, "cylinder": _intersect_cylinder, "ellipsoid": _intersect_ellipsoid}


def intersect(origin: np.ndarray, dirs: np.ndarray, prim: Primitive) -> np.ndarray:
    """Ray parameter t of the first hit of each ray (origin + t * dir) with `prim`; inf where it misses."""
    return _INTERSECT[prim.kind](np.asarray(origin, dtype=np.float64), dirs, prim)


def intersect_ground(origin: np.ndarray, dirs: np.ndarray) -> np.ndarray:
    """t of the hit with the ground plane z = 0 seen from above; inf for rays that do not go down."""
    dz = dirs[..., 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        t = -origin[2] / dz
    return np.where((dz < 0) & (t > _EPS_T), t, np.inf)


# ------------------------------------------------------------------------------------ the cast
def cast(grid: RayGrid, primitives: list[Primitive], with_normals: bool = True) -> RayHits:
    """Nearest hit of every ray of `grid` with the ground and the primitives (inf/NO_HIT beyond max_t)."""
    origin = np.asarray(grid.origin, dtype=np.float64)
    if origin[2] <= 0:
        raise ValueError(f"the sensor origin must be above the ground plane, got z={origin[2]:.3f} m")
    best_t = intersect_ground(origin, grid.dirs)
    ids = np.where(np.isfinite(best_t), GROUND_ID, NO_HIT).astype(np.int32)
    for index, prim in enumerate(primitives):
        for rows, cols in grid.windows(prim):
            t = intersect(origin, grid.dirs[rows, cols], prim)
            best_view, id_view = best_t[rows, cols], ids[rows, cols]
            closer = t < best_view
            best_view[closer] = t[closer]
            id_view[closer] = index + 1
    beyond = best_t > grid.max_t
    best_t[beyond] = np.inf
    ids[beyond] = NO_HIT
    hits = RayHits(best_t, ids)
    if with_normals:
        hits.normals = surface_normals(origin, grid.dirs, hits, primitives)
    return hits


def surface_normals(origin: np.ndarray, dirs: np.ndarray, hits: RayHits, primitives: list[Primitive]) -> np.ndarray:
    """Outward unit normals at the hit points (..., 3); zeros where a ray hits nothing."""
    normals = np.zeros(hits.t.shape + (3,))
    flat_ids = hits.ids.reshape(-1)
    flat_t = hits.t.reshape(-1)
    flat_dirs = dirs.reshape(-1, 3)
    flat_normals = normals.reshape(-1, 3)
    flat_normals[flat_ids == GROUND_ID] = (0.0, 0.0, 1.0)
    # Group the rays by primitive once (sort by id) instead of masking all rays per primitive.
    order = np.argsort(flat_ids, kind="stable")
    sorted_ids = flat_ids[order]
    starts = np.searchsorted(sorted_ids, np.arange(1, len(primitives) + 1), side="left")
    ends = np.searchsorted(sorted_ids, np.arange(1, len(primitives) + 1), side="right")
    for index, prim in enumerate(primitives):
        if starts[index] == ends[index]:
            continue
        rays = order[starts[index]:ends[index]]
        points = origin + flat_t[rays, None] * flat_dirs[rays]
        flat_normals[rays] = _normal_at(points - np.asarray(prim.center), prim)
    return normals


def _normal_at(rel: np.ndarray, prim: Primitive) -> np.ndarray:
    half = np.asarray(prim.half_size)
    if prim.kind == "ellipsoid":
        n = rel / (half * half)
    elif prim.kind == "cylinder":
        radial = np.hypot(rel[:, 0], rel[:, 1]) / half[0]
        on_cap = np.abs(rel[:, 2]) / half[2] > radial
        n = np.where(on_cap[:, None], np.stack([0 * rel[:, 2], 0 * rel[:, 2], np.sign(rel[:, 2])], 1),
                     np.stack([rel[:, 0], rel[:, 1], 0 * rel[:, 2]], 1))
    else:
        c, s = np.cos(prim.yaw), np.sin(prim.yaw)
        local = np.stack([c * rel[:, 0] + s * rel[:, 1], -s * rel[:, 0] + c * rel[:, 1], rel[:, 2]], 1) / half
        axis = np.argmax(np.abs(local), axis=1)
        n_local = np.zeros_like(local)
        n_local[np.arange(len(axis)), axis] = np.sign(local[np.arange(len(axis)), axis])
        n = np.stack([c * n_local[:, 0] - s * n_local[:, 1], s * n_local[:, 0] + c * n_local[:, 1], n_local[:, 2]], 1)
    norm = np.linalg.norm(n, axis=1, keepdims=True)
    return n / np.maximum(norm, 1e-12)


# ------------------------------------------------------------------------------------ sensors' grids
class CameraRays(RayGrid):
    """One ray per pixel centre of a pinhole camera. Directions have camera-frame z = 1, so t is the depth."""

    def __init__(self, width: int, height: int, K: np.ndarray, camera_to_world: np.ndarray, max_depth: float,
                 dirs: np.ndarray | None = None):
        """`dirs`: the `directions` of this camera's K and orientation, when the caller already has them."""
        self.width, self.height = int(width), int(height)
        self.K = np.asarray(K, dtype=np.float64)
        self.camera_to_world = np.asarray(camera_to_world, dtype=np.float64)
        self.world_to_camera = np.linalg.inv(self.camera_to_world)
        self.max_t = float(max_depth)
        if dirs is None:
            dirs = self.directions(self.width, self.height, self.K, self.camera_to_world[:3, :3])
        elif dirs.shape != (self.height, self.width, 3):
            raise ValueError(f"dirs must be ({self.height}, {self.width}, 3) for this camera, got {dirs.shape}")
        self.dirs = dirs
        self.origin = self.camera_to_world[:3, 3].copy()

    @staticmethod
    def directions(width: int, height: int, K: np.ndarray, rotation: np.ndarray) -> np.ndarray:
        """(H, W, 3) world directions through the pixel centres of a camera with intrinsics K whose
        camera -> world rotation is `rotation`: they depend on nothing else, so cameras sharing K and
        orientation (a rectified stereo rig) share them."""
        fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
        cols, rows = np.meshgrid(np.arange(width, dtype=np.float64), np.arange(height, dtype=np.float64))
        local = np.stack([(cols - cx) / fx, (rows - cy) / fy, np.ones_like(cols)], -1)
        return local @ np.asarray(rotation, dtype=np.float64).T

    def windows(self, primitive: Primitive) -> list[tuple[slice, slice]]:
        p = _visible_prism_points(primitive, self.world_to_camera, self.max_t)
        if p is None:
            return []
        u = self.K[0, 0] * p[:, 0] / p[:, 2] + self.K[0, 2]
        v = self.K[1, 1] * p[:, 1] / p[:, 2] + self.K[1, 2]
        c0, c1 = max(int(np.floor(u.min())) - 1, 0), min(int(np.ceil(u.max())) + 2, self.width)
        r0, r1 = max(int(np.floor(v.min())) - 1, 0), min(int(np.ceil(v.max())) + 2, self.height)
        if c0 >= c1 or r0 >= r1:
            return []
        return [(slice(r0, r1), slice(c0, c1))]


# Corner index = 4 * ix + 2 * iy + iz (see Primitive.prism_corners); edges join corners differing in one bit.
_EDGES = np.array([(i, i | bit) for i in range(8) for bit in (1, 2, 4) if not i & bit])
_NEAR = 1e-3  # m: a camera's view of a primitive is clipped at z = _NEAR (hits closer than that are dropped)


def _visible_prism_points(primitive: Primitive, world_to_camera: np.ndarray, max_depth: float) -> np.ndarray | None:
    """(N, 3) camera-frame points whose convex hull is the part of `primitive`'s bounding prism in front of
    the plane z = _NEAR (the corners in front and the points where the 12 edges cross the plane); None where
    no part of the prism lies in front of it or the whole prism lies beyond `max_depth`.

    The prism clipped by a plane is a convex polytope whose vertices are these points, and x/z, y/z (the
    normalised image coordinates) map a convex set in front of the camera onto a convex set: the box of the
    points' normalised coordinates bounds the normalised coordinates of every ray that can hit the primitive.
    """
    corners = primitive.prism_corners() @ world_to_camera[:3, :3].T + world_to_camera[:3, 3]
    near = _NEAR
    z = corners[:, 2]
    if np.all(z <= near) or np.min(z) > max_depth:
        return None
    points = [corners[z > near]]
    a, b = corners[_EDGES[:, 0]], corners[_EDGES[:, 1]]
    crossing = (a[:, 2] > near) != (b[:, 2] > near)
    if crossing.any():
        a, b = a[crossing], b[crossing]
        w = (near - a[:, 2]) / (b[:, 2] - a[:, 2])
        points.append(a + w[:, None] * (b - a))
    return np.concatenate(points)


class RayTiles:
    """Per tile of `tile` x `tile` pixels of a camera with arbitrary rays (a lens-distorted raw camera), the
    box of the normalised coordinates (x/z, y/z in the camera frame) of the rays of the tile's pixels and of
    their 8 neighbours: the one-pixel margin absorbs the rounding of the culling arithmetic, as the pinhole
    windows' extra pixel does. They depend on the camera's rays only, not on its pose: compute them once.

    A ray that hits a primitive has its normalised coordinates inside the box of the primitive's visible
    prism (`_visible_prism_points`), and inside its own tile's box, so these two boxes intersect: taking as
    window every tile whose box meets the primitive's box (the rectangle of tiles that covers them) drops no
    hit. The rays must have z > 0 (a camera seeing less than a half space).
    """

    def __init__(self, local_rays: np.ndarray, tile: int = 16):
        local_rays = np.asarray(local_rays, dtype=np.float64)
        if local_rays.ndim != 3 or local_rays.shape[2] != 3:
            raise ValueError(f"rays must be (H, W, 3), got shape {local_rays.shape}")
        if not np.isfinite(local_rays).all() or not (local_rays[..., 2] > 0).all():
            raise ValueError("camera rays must be finite and point forward (z > 0)")
        if int(tile) != tile or tile < 1:
            raise ValueError(f"tile must be a positive integer, got {tile!r}")
        self.tile = int(tile)
        self.height, self.width = local_rays.shape[:2]
        boxes = []
        for axis in (0, 1):
            coordinate = local_rays[..., axis] / local_rays[..., 2]
            padded = np.pad(coordinate, 1, mode="edge")
            low, high = coordinate.copy(), coordinate.copy()
            for dr in (0, 1, 2):  # the 3x3 neighbourhood of every pixel
                for dc in (0, 1, 2):
                    shifted = padded[dr:dr + self.height, dc:dc + self.width]
                    np.minimum(low, shifted, out=low)
                    np.maximum(high, shifted, out=high)
            boxes.append((self._reduce(low, np.min), self._reduce(high, np.max)))
        (self.x_min, self.x_max), (self.y_min, self.y_max) = boxes

    def _reduce(self, values: np.ndarray, how) -> np.ndarray:
        """(tile rows, tile columns) reduction of (H, W) values over each tile (the last ones may be smaller)."""
        rows = -(-self.height // self.tile)
        cols = -(-self.width // self.tile)
        padded = np.pad(values, ((0, rows * self.tile - self.height), (0, cols * self.tile - self.width)), mode="edge")
        return how(padded.reshape(rows, self.tile, cols, self.tile), axis=(1, 3))

    def window(self, x0: float, x1: float, y0: float, y1: float) -> list[tuple[slice, slice]]:
        """The rectangle of pixels covering every tile whose box meets [x0, x1] x [y0, y1] (normalised)."""
        meets = (self.x_max >= x0) & (self.x_min <= x1) & (self.y_max >= y0) & (self.y_min <= y1)
        rows, cols = np.flatnonzero(meets.any(axis=1)), np.flatnonzero(meets.any(axis=0))
        if rows.size == 0:
            return []
        t = self.tile
        return [(slice(int(rows[0]) * t, min((int(rows[-1]) + 1) * t, self.height)),
                 slice(int(cols[0]) * t, min((int(cols[-1]) + 1) * t, self.width)))]


class TiledCameraRays(RayGrid):
    """One ray per pixel of a camera with arbitrary per-pixel rays (e.g. a raw camera's, through its lens
    distortion): `local_rays` (H, W, 3) in the camera frame with z = 1, so t is the depth along the camera's
    optical axis. Primitives are culled to the rectangle of the `tiles` (RayTiles of the same rays) that
    their visible prism can reach: conservative, so the hits are those of a cast over the whole image."""

    def __init__(self, local_rays: np.ndarray, camera_to_world: np.ndarray, max_depth: float,
                 tiles: RayTiles | None = None, dirs: np.ndarray | None = None):
        """`tiles`, `dirs` (the world directions, local_rays @ R^T): when the caller already has them."""
        local_rays = np.asarray(local_rays, dtype=np.float64)
        self.height, self.width = local_rays.shape[:2]
        self.camera_to_world = np.asarray(camera_to_world, dtype=np.float64)
        self.world_to_camera = np.linalg.inv(self.camera_to_world)
        self.max_t = float(max_depth)
        self.tiles = RayTiles(local_rays) if tiles is None else tiles
        if (self.tiles.height, self.tiles.width) != (self.height, self.width):
            raise ValueError(f"tiles are of a {self.tiles.width}x{self.tiles.height} camera, the rays of a "
                             f"{self.width}x{self.height} one")
        if dirs is None:
            dirs = local_rays @ self.camera_to_world[:3, :3].T
        elif dirs.shape != local_rays.shape:
            raise ValueError(f"dirs must be {local_rays.shape} for this camera, got {dirs.shape}")
        self.dirs = dirs
        self.origin = self.camera_to_world[:3, 3].copy()

    def windows(self, primitive: Primitive) -> list[tuple[slice, slice]]:
        p = _visible_prism_points(primitive, self.world_to_camera, self.max_t)
        if p is None:
            return []
        x, y = p[:, 0] / p[:, 2], p[:, 1] / p[:, 2]
        return self.tiles.window(x.min(), x.max(), y.min(), y.max())


class LidarRays(RayGrid):
    """A spinning LiDAR's rays: rows = beams (ascending elevation), columns = azimuth steps.

    Column k points at azimuth k * step (counter-clockwise from the sensor's x axis). A grid may hold the
    full circle (columns 0..n-1) or a contiguous sector `first_column .. first_column + count - 1` (negative
    indices are angles below zero). The sensor's z axis may lean up to MAX_TILT (10 deg) from the vertical (a
    pitched mount); the culling windows widen by that lean, so a tilted sensor loses no hit.
    """

    MAX_TILT = np.radians(10.0)

    def __init__(self, elevations_rad: np.ndarray, n_columns: int, sensor_to_world: np.ndarray, max_range: float,
                 first_column: int = 0, column_count: int | None = None):
        self.elevations = np.asarray(elevations_rad, dtype=np.float64)
        if np.any(np.diff(self.elevations) <= 0):
            raise ValueError("beam elevations must be strictly increasing")
        self.n_columns = int(n_columns)
        self.step = 2.0 * np.pi / self.n_columns
        self.first_column = int(first_column)
        self.column_count = self.n_columns if column_count is None else int(column_count)
        if not 0 < self.column_count <= self.n_columns:
            raise ValueError(f"column_count must be in 1..{self.n_columns}, got {self.column_count}")
        self.sensor_to_world = np.asarray(sensor_to_world, dtype=np.float64)
        self.tilt = float(np.arccos(np.clip(self.sensor_to_world[2, 2], -1.0, 1.0)))
        if self.tilt > self.MAX_TILT:
            raise ValueError(f"the LiDAR's z axis leans {np.degrees(self.tilt):.1f} deg from the vertical; at most "
                             f"{np.degrees(self.MAX_TILT):.0f} deg is supported")
        # A lean of `tilt` moves a beam's world elevation by up to tilt and its azimuth by up to about
        # tilt * tan(elevation): the margins the culling windows add.
        steepest = float(np.max(np.abs(self.elevations))) if len(self.elevations) else 0.0
        self._elevation_margin = self.tilt
        self._column_margin = int(np.ceil(self.tilt * (1.0 + np.tan(steepest)) / self.step)) if self.tilt else 0
        self.yaw = float(np.arctan2(self.sensor_to_world[1, 0], self.sensor_to_world[0, 0]))
        self.max_t = float(max_range)
        self.origin = self.sensor_to_world[:3, 3].copy()
        self.azimuths = (self.first_column + np.arange(self.column_count)) * self.step
        el, az = np.meshgrid(self.elevations, self.azimuths, indexing="ij")
        self.local_dirs = np.stack([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), np.sin(el)], -1)
        self.dirs = self.local_dirs @ self.sensor_to_world[:3, :3].T

    def windows(self, primitive: Primitive) -> list[tuple[slice, slice]]:
        ox, oy, oz = self.origin
        corners = primitive.prism_corners()
        z_low, z_high = corners[:, 2].min() - oz, corners[:, 2].max() - oz
        d_min = primitive.footprint_distance(ox, oy)
        horizontal = np.hypot(corners[:, 0] - ox, corners[:, 1] - oy)
        d_max = horizontal.max()
        if d_min - max(abs(z_low), abs(z_high)) > self.max_t:
            return []
        el_high = np.arctan2(z_high, d_min if z_high > 0 else d_max) + self._elevation_margin
        el_low = np.arctan2(z_low, d_min if z_low < 0 else d_max) - self._elevation_margin
        r0 = max(int(np.searchsorted(self.elevations, el_low, side="left")) - 1, 0)
        r1 = min(int(np.searchsorted(self.elevations, el_high, side="right")) + 1, len(self.elevations))
        if r0 >= r1:
            return []
        if d_min == 0.0:
            c0, c1 = 0, self.n_columns  # the sensor stands inside the footprint: every azimuth
        else:
            azimuth = np.arctan2(corners[:, 1] - oy, corners[:, 0] - ox) - self.yaw
            centre = np.arctan2(primitive.center[1] - oy, primitive.center[0] - ox) - self.yaw
            offset = np.angle(np.exp(1j * (azimuth - centre)))  # wrapped to (-pi, pi]
            lo, hi = centre + offset.min(), centre + offset.max()
            c0 = int(np.floor(lo / self.step)) - 1 - self._column_margin
            c1 = int(np.ceil(hi / self.step)) + 2 + self._column_margin
        rows = slice(r0, r1)
        windows = []
        grid_lo, grid_hi = self.first_column, self.first_column + self.column_count
        for shift in (-self.n_columns, 0, self.n_columns):
            a, b = max(c0 + shift, grid_lo), min(c1 + shift, grid_hi)
            if a < b:
                windows.append((rows, slice(a - grid_lo, b - grid_lo)))
        if c1 - c0 >= self.n_columns:
            windows = [(rows, slice(0, self.column_count))]
        return windows
