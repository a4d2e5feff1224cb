"""Raw cameras: CameraInfo's lens distortion (plumb_bob, rational_polynomial, equidistant) and rectification
rotation, checked against OpenCV's own maps and against geometry built here; the pipeline's `rectify` modes on a
distorted wall, and the frame handler's drop of unusable distortions."""
from __future__ import annotations

import dataclasses

import cv2
import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from depth_completion_ros.baselines import BaselineEngine
from depth_completion_ros.data import messages
from depth_completion_ros.geometry import PinholeCamera, make_transform, project, quaternion_to_rotation
from depth_completion_ros.pipeline import NOT_RECTIFIED_BY_OPTION, TAKEN_AS_RECTIFIED, FrameProcessor, PipelineOptions
from depth_completion_ros.raw_camera import (
    DISTORTION_MODELS, DistortionError, RawCamera, Rectifier, depth_in_raw_grid, raw_camera_info_fields,
)
from depth_completion_ros.ros.synthetic import wall_frame

TYPES = get_typestore(Stores.ROS2_HUMBLE).types
CAMERA = PinholeCamera(96, 64, fx=60.0, fy=60.0, cx=47.5, cy=31.5)
LENSES = {"plumb_bob": [-0.3, 0.1, 0.001, -0.001, 0.0],  # about KITTI's raw lens
          "rational_polynomial": [-0.3, 0.1, 0.001, -0.001, 0.01, 0.05, 0.01, 0.001],
          "equidistant": [-0.05, 0.01, 0.002, -0.001]}
ROTATION = quaternion_to_rotation(0.01, -0.02, 0.005, 1.0)  # about 2.6 degrees: a stereo rig's rectification


def camera_info(raw: RawCamera, **changes):
    fields = {**raw_camera_info_fields(raw), **changes}
    roi = messages.make_message(TYPES["sensor_msgs/msg/RegionOfInterest"], x_offset=0, y_offset=0, height=0,
                                width=0, do_rectify=False)
    return messages.make_message(TYPES["sensor_msgs/msg/CameraInfo"],
                                 header=messages.build_header(TYPES, 0, "camera"), binning_x=0, binning_y=0,
                                 roi=roi, **fields)


@pytest.mark.parametrize("model", sorted(LENSES))
def test_projection_rays_and_rectification_agree_with_each_other_and_opencv(model):
    raw = RawCamera.create(CAMERA, model, LENSES[model], R=ROTATION)
    assert raw.needs_rectification and raw.distorted and raw.rotated
    rows, cols = np.mgrid[0:CAMERA.height:7, 0:CAMERA.width:7].astype(np.float64)
    # rays and project are each other's inverse (to 1e-9 px)
    u, v = raw.project(raw.rays(cols, rows).reshape(-1, 3))
    assert np.allclose(u, cols.ravel(), atol=1e-9) and np.allclose(v, rows.ravel(), atol=1e-9)
    # OpenCV's undistort-rectify maps take rectified pixels to raw ones; rectified_coordinates goes back
    map_x, map_y = raw.rectify_maps()
    inner = (slice(8, -8), slice(8, -8))
    u_r, v_r = raw.rectified_coordinates(map_x[inner].astype(np.float64), map_y[inner].astype(np.float64))
    grid_v, grid_u = np.mgrid[0:CAMERA.height, 0:CAMERA.width][:, inner[0], inner[1]]
    assert np.abs(u_r - grid_u).max() < 1e-2 and np.abs(v_r - grid_v).max() < 1e-2  # float32 maps
    # a rectified pixel's ray, rotated into the raw frame, projects where the map says
    rays_rect = np.linalg.solve(CAMERA.K, np.stack([grid_u.ravel(), grid_v.ravel(), np.ones(grid_u.size)]))
    u_raw, v_raw = raw.project((ROTATION.T @ rays_rect).T)
    assert np.allclose(u_raw, map_x[inner].ravel(), atol=1e-3) and np.allclose(v_raw, map_y[inner].ravel(), atol=1e-3)


def test_camera_info_checks_name_the_problem():
    good = RawCamera.create(CAMERA, "plumb_bob", LENSES["plumb_bob"])
    assert RawCamera.from_camera_info(camera_info(good)).model == "plumb_bob"
    with pytest.raises(DistortionError, match="unknown distortion model 'fisheye8'"):
        RawCamera.from_camera_info(camera_info(good, distortion_model="fisheye8"))
    with pytest.raises(DistortionError, match="'plumb_bob' takes 5 coefficients in d, got 3"):
        RawCamera.from_camera_info(camera_info(good, d=np.array([-0.3, 0.1, 0.0])))
    with pytest.raises(DistortionError, match="not a rotation"):
        RawCamera.from_camera_info(camera_info(good, r=np.diag([2.0, 1.0, 1.0]).reshape(-1)))
    with pytest.raises(DistortionError, match="non-finite"):
        RawCamera.from_camera_info(camera_info(good, d=np.array([np.nan, 0.1, 0.0, 0.0, 0.0])))
    # What drivers of rectified or uncalibrated cameras publish needs nothing: no d (any model), all-zero r.
    for changes in ({"d": np.zeros(0), "distortion_model": ""}, {"d": np.zeros(5), "distortion_model": "unknown"},
                    {"d": np.zeros(0), "r": np.zeros(9)}):
        plain = RawCamera.from_camera_info(camera_info(good, **changes))
        assert not plain.needs_rectification, changes
    assert set(DISTORTION_MODELS) == {"plumb_bob", "rational_polynomial", "equidistant"}


def test_depth_in_raw_grid_converts_the_depth_along_the_rotated_axis():
    """A wall at 5 m in front of the raw camera (fronto-parallel there) is tilted in the rectified camera; seen back
    from the raw pixels it is 5 m again."""
    raw = RawCamera.create(CAMERA, "plumb_bob", LENSES["plumb_bob"], R=ROTATION)
    rows, cols = np.mgrid[0:CAMERA.height, 0:CAMERA.width]
    rays_rect = np.linalg.solve(CAMERA.K, np.stack([cols.ravel(), rows.ravel(), np.ones(cols.size)]))
    rectified_depth = (5.0 / (ROTATION.T @ rays_rect)[2]).reshape(CAMERA.height, CAMERA.width).astype(np.float32)
    back = depth_in_raw_grid(rectified_depth, raw, fill=np.nan)
    inside = np.isfinite(back)
    assert inside.mean() > 0.6  # barrel distortion: the raw image's corners see beyond the rectified one
    assert np.abs(back[inside] - 5.0).max() < 0.02  # nearest rectified pixel: the tilt over half a pixel


def distorted_wall(model: str, rotation=None, **frame_options):
    """The wall frame of `ros.synthetic` with a raw camera's CameraInfo; the image warped into its raw grid."""
    frame = wall_frame(TYPES, 1_000, width=CAMERA.width, height=CAMERA.height, **frame_options)
    rectified = messages.camera_from_camera_info(frame.camera_info)
    raw = RawCamera.create(rectified, model, LENSES[model], R=rotation)
    rgb = messages.rgb_from_image(frame.image)
    rows, cols = np.mgrid[0:rectified.height, 0:rectified.width].astype(np.float64)
    u_r, v_r = raw.rectified_coordinates(cols, rows)
    raw_rgb = cv2.remap(rgb, u_r.astype(np.float32), v_r.astype(np.float32), cv2.INTER_LINEAR,
                        borderMode=cv2.BORDER_REPLICATE)
    image = messages.build_image(TYPES["sensor_msgs/msg/Image"], frame.image.header, raw_rgb, "rgb8")
    return frame, raw, image, camera_info(raw)


@pytest.mark.parametrize("model", sorted(LENSES))
def test_the_pipeline_rectifies_image_and_lidar_into_the_rectified_camera(model):
    frame, raw, image, info = distorted_wall(model, rotation=ROTATION)
    processor = FrameProcessor(BaselineEngine("nearest"))
    result = processor.process_messages(image, frame.cloud, camera=info, lidar_to_camera=frame.lidar_to_camera)
    assert result.raw_camera is not None and result.unrectified is None and result.camera == raw.rectified
    assert "rectification" in result.timings_ms
    # The LiDAR lands where the rectified camera sees it: the raw frame's points rotated by R, projected by P.
    points, _ = messages.pointcloud2_to_xyz(frame.cloud)
    expected = project(points, raw.rectified, make_transform(ROTATION, np.zeros(3)) @ frame.lidar_to_camera)
    assert np.array_equal(result.sparse, expected)
    # The image too: the raw image rectified is the original gradient (inside, away from the borders).
    rectified_rgb = processor.rectifier.rectify(messages.rgb_from_image(image), raw).astype(np.int32)
    original = messages.rgb_from_image(frame.image).astype(np.int32)
    assert np.abs(rectified_rgb - original)[8:-8, 8:-8].mean() < 2.0
    # Back in the raw grid, the prediction of the wall is the wall's depth along the raw axis.
    back = result.in_raw_grid()
    assert back.dense.shape == (raw.height, raw.width) and back.raw_camera.key() == raw.key()
    seen = np.isfinite(back.dense)
    assert seen.mean() > 0.6 and np.median(np.abs(back.dense[seen] - frame.wall_depth)) < 0.05


def test_rectify_false_and_the_stereo_translation_leave_the_image_as_it_is():
    frame, raw, image, info = distorted_wall("plumb_bob")
    engine = BaselineEngine("nearest")
    off = FrameProcessor(engine, options=PipelineOptions(rectify="false")).process_messages(
        image, frame.cloud, camera=info, lidar_to_camera=frame.lidar_to_camera)
    assert off.raw_camera is None and off.unrectified == NOT_RECTIFIED_BY_OPTION
    assert "rectification" not in off.timings_ms
    # KITTI converters: rectified sync images beside raw camera 02's k and d, and P_rect_02 with Tx.
    stereo_p = np.array(info.p, dtype=np.float64)
    stereo_p[3] = 44.857
    stereo = dataclasses.replace(info, p=stereo_p)
    taken = FrameProcessor(engine).process_messages(image, frame.cloud, camera=stereo,
                                                    lidar_to_camera=frame.lidar_to_camera)
    assert taken.raw_camera is None and taken.unrectified == TAKEN_AS_RECTIFIED
    forced = FrameProcessor(engine, options=PipelineOptions(rectify="true")).process_messages(
        image, frame.cloud, camera=stereo, lidar_to_camera=frame.lidar_to_camera)
    assert forced.raw_camera is not None
    with pytest.raises(ValueError, match="rectify must be one of"):
        PipelineOptions(rectify="yes")


def test_rectification_maps_are_computed_once_per_camera():
    rectifier = Rectifier(cache_size=2)
    cameras = [RawCamera.create(CAMERA, "plumb_bob", [k1, 0.1, 0.0, 0.0, 0.0]) for k1 in (-0.1, -0.2, -0.3)]
    first = rectifier.maps(cameras[0])
    assert rectifier.maps(RawCamera.create(CAMERA, "plumb_bob", [-0.1, 0.1, 0.0, 0.0, 0.0])) is first
    rectifier.maps(cameras[1])
    rectifier.maps(cameras[2])                      # the oldest goes
    assert rectifier.maps(cameras[0]) is not first
