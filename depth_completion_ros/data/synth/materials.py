"""Surface appearance: procedural textures (albedo for the camera) and LiDAR reflectance, per hit point.

Textures are pure functions of the world position, so a surface looks the same from every frame and the
same seed gives the same image bytes. Noise is hashed value noise on an integer lattice.
"""
from __future__ import annotations

import numpy as np

from depth_completion_ros.data.synth.raycast import GROUND_ID, Primitive
from depth_completion_ros.data.synth.scene import (
    CAR_BODY, CAR_GLASS, CLOTHING, FACADE, FOLIAGE, GROUND, LANE_WIDTH, POLE, ROAD_HALF_WIDTH, SIDEWALK, SKIN,
    TRUNK,
)

_MASK64 = np.uint64(0xFFFFFFFFFFFFFFFF)


def _hash01(ix: np.ndarray, iy: np.ndarray, seed: int) -> np.ndarray:
    """A float in [0, 1) per integer lattice point (splitmix64-style mixing; wraps in uint64)."""
    h = (ix.astype(np.int64).astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
         ^ iy.astype(np.int64).astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
         ^ np.uint64((seed * 0x165667B19E3779F9) & 0xFFFFFFFFFFFFFFFF))
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def value_noise(x: np.ndarray, y: np.ndarray, cell: float, seed: int) -> np.ndarray:
    """Smooth noise in [0, 1): lattice values every `cell` metres, smoothstep-interpolated."""
    gx, gy = np.asarray(x) / cell, np.asarray(y) / cell
    ix, iy = np.floor(gx), np.floor(gy)
    fx, fy = gx - ix, gy - iy
    fx, fy = fx * fx * (3 - 2 * fx), fy * fy * (3 - 2 * fy)
    v00, v10 = _hash01(ix, iy, seed), _hash01(ix + 1, iy, seed)
    v01, v11 = _hash01(ix, iy + 1, seed), _hash01(ix + 1, iy + 1, seed)
    return (v00 * (1 - fx) + v10 * fx) * (1 - fy) + (v01 * (1 - fx) + v11 * fx) * fy


def fractal_noise(x: np.ndarray, y: np.ndarray, cells: tuple[float, ...], seed: int) -> np.ndarray:
    """Sum of value noise octaves (coarse to fine, halving weights), normalised to [0, 1)."""
    total, weight_sum, weight = 0.0, 0.0, 1.0
    for octave, cell in enumerate(cells):
        total = total + weight * value_noise(x, y, cell, seed + 7919 * octave)
        weight_sum += weight
        weight *= 0.5
    return total / weight_sum


def _ground(p: np.ndarray, seed: int) -> tuple[np.ndarray, np.ndarray]:
    x, y = p[:, 0], p[:, 1]
    abs_y = np.abs(y)
    grain = fractal_noise(x, y, (2.0, 0.4, 0.08), seed)
    asphalt = 0.17 + 0.09 * grain
    albedo = np.repeat(asphalt[:, None], 3, axis=1) * (1.0, 1.0, 1.04)
    reflectance = 0.16 + 0.08 * grain
    centre_dash = (abs_y < 0.075) & (np.mod(x, 9.0) < 3.0)
    edge_line = np.abs(abs_y - LANE_WIDTH) < 0.075
    marking = centre_dash | edge_line
    albedo[marking] = 0.80 + 0.05 * grain[marking, None]
    reflectance[marking] = 0.75
    off_road = abs_y > ROAD_HALF_WIDTH
    grass = (0.18, 0.30, 0.11) * (0.7 + 0.6 * fractal_noise(x, y, (1.0, 0.15), seed + 11))[:, None]
    albedo[off_road] = grass[off_road]
    reflectance[off_road] = 0.35
    return albedo, reflectance


def _sidewalk(p, n, base, seed):
    x, y = p[:, 0], p[:, 1]
    tile = 0.4
    joint = (np.minimum(np.mod(x, tile), tile - np.mod(x, tile)) < 0.012) | \
            (np.minimum(np.mod(y, tile), tile - np.mod(y, tile)) < 0.012)
    shade = 0.9 + 0.15 * value_noise(np.floor(x / tile), np.floor(y / tile), 1.0, seed)
    albedo = base * shade[:, None]
    albedo[joint] *= 0.7
    kerb_face = np.abs(n[:, 2]) < 0.5
    albedo[kerb_face] = (0.68, 0.68, 0.66)
    return albedo, np.full(len(p), 0.30)


def _facade(p, n, base, seed):
    along = np.where(np.abs(n[:, 1]) >= np.abs(n[:, 0]), p[:, 0], p[:, 1])
    z = p[:, 2]
    # Bricks: 0.25 x 0.065 m courses, every other course shifted by half a brick.
    course = np.floor(z / 0.075)
    brick_u = along / 0.26 + 0.5 * np.mod(course, 2)
    mortar = (np.mod(z, 0.075) < 0.012) | (np.mod(brick_u, 1.0) < 0.05)
    brick_tone = 0.85 + 0.3 * value_noise(np.floor(brick_u), course, 1.0, seed)
    albedo = base * brick_tone[:, None]
    albedo[mortar] = base[mortar] * 0.6 + 0.3
    reflectance = np.full(len(p), 0.35)
    # Windows: a grid of 3.2 m floors; the ground floor has larger shop windows.
    floor_height, bay = 3.2, 2.8
    in_floor, in_bay = np.mod(z, floor_height), np.mod(along, bay)
    ground_floor = z < floor_height
    window = np.where(ground_floor, (in_floor > 0.5) & (in_floor < 2.7) & (in_bay > 0.3) & (in_bay < 2.5),
                      (in_floor > 1.0) & (in_floor < 2.4) & (in_bay > 0.7) & (in_bay < 2.1))
    frame = np.where(ground_floor, (in_floor > 0.4) & (in_floor < 2.8) & (in_bay > 0.2) & (in_bay < 2.6),
                     (in_floor > 0.9) & (in_floor < 2.5) & (in_bay > 0.6) & (in_bay < 2.2)) & ~window
    vertical = np.abs(n[:, 2]) < 0.5
    glass_tone = 0.10 + 0.12 * value_noise(np.floor(along / bay), np.floor(z / floor_height), 1.0, seed + 5)
    albedo[vertical & frame] = (0.85, 0.85, 0.82)
    albedo[vertical & window] = glass_tone[vertical & window, None] * (0.8, 0.9, 1.1)
    reflectance[vertical & window] = 0.06
    roof = ~vertical
    albedo[roof] = (0.25, 0.24, 0.24)
    return albedo, reflectance


def _car_body(p, n, base, seed):
    albedo = np.broadcast_to(base, (len(p), 3)).copy()
    reflectance = np.full(len(p), 0.55)
    wheels = p[:, 2] < 0.45
    albedo[wheels] = (0.04, 0.04, 0.045)
    reflectance[wheels] = 0.08
    return albedo, reflectance


def _car_glass(p, n, base, seed):
    albedo = np.broadcast_to(base, (len(p), 3)).copy()
    reflectance = np.full(len(p), 0.55)
    glass = np.abs(n[:, 2]) < 0.5
    albedo[glass] = (0.07, 0.09, 0.11)
    reflectance[glass] = 0.05
    return albedo, reflectance


def _foliage(p, n, base, seed):
    leaves = fractal_noise(p[:, 0] + 0.7 * p[:, 2], p[:, 1] - 0.4 * p[:, 2], (0.6, 0.15, 0.05), seed)
    return base * (0.5 + 0.9 * leaves)[:, None], 0.22 + 0.1 * leaves


def _trunk(p, n, base, seed):
    bark = value_noise(np.arctan2(n[:, 1], n[:, 0]) * 8.0, p[:, 2] * 2.0, 0.5, seed)
    return base * (0.7 + 0.5 * bark)[:, None], np.full(len(p), 0.30)


def _plain(reflectance):
    def shade(p, n, base, seed):
        return np.broadcast_to(base, (len(p), 3)).copy(), np.full(len(p), reflectance)
    return shade


_SURFACES = {
    SIDEWALK: _sidewalk, FACADE: _facade, CAR_BODY: _car_body, CAR_GLASS: _car_glass, POLE: _plain(0.45),
    TRUNK: _trunk, FOLIAGE: _foliage, CLOTHING: _plain(0.28), SKIN: _plain(0.30),
}


def appearance(points: np.ndarray, normals: np.ndarray, ids: np.ndarray, primitives: list[Primitive],
               texture_seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Albedo (M, 3) in [0, 1] and LiDAR reflectance (M,) in [0, 1] of hit points with hit ids `ids` (>= 0)."""
    albedo = np.zeros((len(points), 3))
    reflectance = np.zeros(len(points))
    ground = ids == GROUND_ID
    if ground.any():
        albedo[ground], reflectance[ground] = _ground(points[ground], texture_seed)
    materials = np.array([GROUND] + [prim.material for prim in primitives])
    colours = np.array([(0.0, 0.0, 0.0)] + [prim.color for prim in primitives]).reshape(-1, 3)
    hit_material = materials[ids]
    for material, shade in _SURFACES.items():
        mask = (hit_material == material) & ~ground
        if mask.any():
            albedo[mask], reflectance[mask] = shade(points[mask], normals[mask], colours[ids[mask]],
                                                    texture_seed + 101 * material)
    return np.clip(albedo, 0.0, 1.0), np.clip(reflectance, 0.0, 1.0)
