"""Every malformed input kind of `ros.malformed` gets the outcome it declares from the node's frame handler
(without ROS; the live fuzz of the running node is test/ros/test_robustness.py)."""
from __future__ import annotations

import numpy as np
import pytest
from rosbags.typesys import Stores, get_typestore

from depth_completion_ros.baselines import BaselineEngine
from depth_completion_ros.pipeline import FrameProcessor
from depth_completion_ros.ros.frame_handler import FrameHandler
from depth_completion_ros.ros.latest_frame import FrameDropped
from depth_completion_ros.ros.malformed import KINDS, PUBLISHED, malformed_triple
from depth_completion_ros.ros.synthetic import wall_frame
from depth_completion_ros.ros.transforms import TransformResolver

TYPES = get_typestore(Stores.ROS2_HUMBLE).types


def _handler(published: list) -> FrameHandler:
    rig = wall_frame(TYPES, 0).lidar_to_camera

    def lookup(camera_frame, lidar_frame):  # tf knows the rig's frames only
        return rig if (camera_frame, lidar_frame) == ("camera", "lidar") else None

    return FrameHandler(FrameProcessor(BaselineEngine("nearest")), TransformResolver(lookup, None, wait_s=0.0),
                        lambda result, image, info: published.append(result))


def _outcome(handler: FrameHandler, triple) -> str:
    try:
        handler(triple)
    except FrameDropped as dropped:
        return dropped.reason
    return PUBLISHED


@pytest.mark.parametrize("kind", KINDS, ids=[kind.name for kind in KINDS])
def test_each_kind_has_its_declared_outcome_and_the_next_frame_is_right(kind):
    published = []
    handler = _handler(published)
    frame = wall_frame(TYPES, 1_000)
    assert _outcome(handler, malformed_triple(kind, TYPES, frame, np.random.default_rng(0))) == kind.expected
    good = wall_frame(TYPES, 2_000)
    assert _outcome(handler, (good.image, good.camera_info, good.cloud)) == PUBLISHED
    dense = published[-1].dense
    assert np.allclose(dense, good.wall_depth, atol=1e-4)  # a nearest fill of a flat wall is the wall


def test_the_kinds_cover_the_issue_list():
    names = {kind.name for kind in KINDS}
    assert len(names) == len(KINDS) >= 15
    assert {PUBLISHED, "conversion_error", "size_mismatch", "no_transform", "bad_distortion"} == \
        {kind.expected for kind in KINDS}


def test_ever_new_frame_ids_do_not_grow_the_transform_tables():
    from depth_completion_ros.ros.transforms import MAX_FRAME_PAIRS

    resolver = TransformResolver(lambda camera, lidar: None, np.eye(4), wait_s=10.0)
    for index in range(10 * MAX_FRAME_PAIRS):
        assert resolver.resolve("camera", f"lidar_{index}").transform is None  # still waiting for tf
    assert len(resolver._first_request) <= MAX_FRAME_PAIRS and len(resolver._last_source) <= MAX_FRAME_PAIRS
