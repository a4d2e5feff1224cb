"""What the node's worker does with one synchronized (Image, CameraInfo, PointCloud2) triple, without ROS.

Checks the camera model and the image size, finds the LiDAR->camera transform, runs the pipeline and
hands the result to `publish`. Each failure becomes a `FrameDropped` with its reason, so that the worker
counts it: "conversion_error" (CameraInfo without calibration, malformed cloud, unknown encoding),
"size_mismatch" (image size differs from CameraInfo), "bad_distortion" (a lens distortion the node cannot use:
unknown model, `d` of the wrong length, `r` not a rotation), "no_transform". Anything else that escapes (the
network failing) is counted by the worker as "inference_error".
"""
from __future__ import annotations

from typing import Callable

from ..data import messages
from ..pipeline import FrameProcessor, FrameResult
from ..raw_camera import DistortionError, RawCamera
from .latest_frame import BAD_DISTORTION, CONVERSION_ERROR, NO_TRANSFORM, SIZE_MISMATCH, FrameDropped
from .transforms import Resolution, TransformResolver

Publish = Callable[[FrameResult, object, object], None]


class FrameHandler:
    """Callable on a frame `(image, camera_info, cloud)`: process it and `publish(result, image, camera_info)`.

    on_transform_change(camera_frame, lidar_frame, resolution) is called when the transform's source
    changes (first found, tf replacing the parameter fallback), for logging.
    """

    def __init__(self, processor: FrameProcessor, transforms: TransformResolver, publish: Publish,
                 on_transform_change: Callable[[str, str, Resolution], None] | None = None):
        self.processor = processor
        self.transforms = transforms
        self.publish = publish
        self.on_transform_change = on_transform_change

    def __call__(self, frame) -> FrameResult:
        image, camera_info, cloud = frame
        try:
            camera = RawCamera.from_camera_info(camera_info)
        except DistortionError as error:
            raise FrameDropped(BAD_DISTORTION, f"camera_info: {error}") from error
        except ValueError as error:
            raise FrameDropped(CONVERSION_ERROR, f"camera_info: {error}") from error
        try:
            messages.check_image_matches_camera(image, camera.rectified)
        except ValueError as error:
            raise FrameDropped(SIZE_MISMATCH, str(error)) from error

        camera_frame, lidar_frame = image.header.frame_id, cloud.header.frame_id
        resolution = self.transforms.resolve(camera_frame, lidar_frame)
        if resolution.changed and self.on_transform_change is not None:
            self.on_transform_change(camera_frame, lidar_frame, resolution)
        if resolution.transform is None:
            raise FrameDropped(NO_TRANSFORM, f"no transform {camera_frame!r} <- {lidar_frame!r} yet")
        try:
            # The raw camera: the pipeline rectifies its image (per its `rectify` option).
            result = self.processor.process_messages(image, cloud, camera=camera,
                                                     lidar_to_camera=resolution.transform)
        except ValueError as error:  # malformed cloud, unknown encoding, ...
            raise FrameDropped(CONVERSION_ERROR, str(error)) from error
        self.publish(result, image, camera_info)
        return result
