"""The CPU engine's memory: ONNX Runtime sessions opened by `open_session` on the CPU allocate from the one arena
registered in onnxruntime's environment (`onnx_runtime.CPU_ARENA`, one region that a frame's chunks share), with
the depth of the options before it; the fused propagation's workspace keeps one buffer per plane whatever the
region of interest's size. benchmarks/onnx_memory.py measures what this saves (1242x375)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import pytest

from depth_completion_ros.models import dacspn_cpu
from depth_completion_ros.models.layout import RefinementLayout
from depth_completion_ros.model_zoo import model_dirs
from depth_completion_ros.runtime import onnx_runtime
from depth_completion_ros.runtime.inputs import example_arrays
from depth_completion_ros.runtime.onnx_files import INPUT_NAMES, read_onnx_refinement
from depth_completion_ros.runtime.spec import Device

ort = pytest.importorskip("onnxruntime")
LITE = "cdspn_x32_lite_synth.fused.onnx"


@pytest.fixture(scope="module")
def lite_fused():
    for folder in model_dirs():
        if (folder / LITE).is_file():
            return folder / LITE
    pytest.skip(f"{LITE} is not installed")


def test_cpu_sessions_use_the_shared_arena_with_one_region(lite_fused):
    session = onnx_runtime.open_session(lite_fused, Device("cpu"), threads=1)
    options = session.get_session_options()
    assert options.get_session_config_entry("session.use_env_allocators") == "1"
    assert onnx_runtime.shared_cpu_arena() is True  # registered once, by the first CPU session of the process
    assert not options.enable_mem_pattern and options.enable_cpu_mem_arena
    # kNextPowerOfTwo with a first region that holds a KITTI frame's activations (~560 MiB, default CDSPN).
    assert onnx_runtime.CPU_ARENA["arena_extend_strategy"] == 0
    assert onnx_runtime.CPU_ARENA["initial_chunk_size_bytes"] >= 768 << 20


def test_the_shared_arena_serves_the_sessions_allocations(lite_fused):
    # In a fresh process (one registration per process), an arena capped at 1 MiB must make a frame fail: the
    # session's tensors come from the registered arena, not from a session arena of onnxruntime's defaults.
    code = textwrap.dedent(f"""
        import sys
        import numpy as np
        from depth_completion_ros.runtime import onnx_runtime
        from depth_completion_ros.runtime.inputs import example_arrays
        from depth_completion_ros.runtime.onnx_files import INPUT_NAMES
        from depth_completion_ros.runtime.spec import Device
        onnx_runtime.CPU_ARENA = {{**onnx_runtime.CPU_ARENA, "max_mem": 1 << 20}}
        session = onnx_runtime.open_session({str(lite_fused)!r}, Device("cpu"), threads=1, log_severity=4)
        try:
            session.run(None, dict(zip(INPUT_NAMES, example_arrays(64, 96))))
        except Exception as error:
            print("FAILED", "BFCArena" in str(error) or "Available memory" in str(error))
        else:
            print("RAN")
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "FAILED True" in done.stdout, done.stdout + done.stderr[-2000:]


def test_a_frame_that_does_not_fit_in_memory_fails_naming_memory_and_the_engine_goes_on(lite_fused):
    # In a fresh process: after a small frame, the address space is limited to a little more than the process
    # already has (as a robot's memory limit would), so a frame larger than the arena's first region (made 32 MiB
    # here, to keep the test small) cannot get its tensors. The error must say so (not blame the input size), and
    # the next small frame must run.
    code = textwrap.dedent(f"""
        import resource
        import numpy as np
        from depth_completion_ros.inference import Engine
        from depth_completion_ros.runtime import onnx_runtime
        from depth_completion_ros.runtime.inputs import example_arrays
        onnx_runtime.CPU_ARENA = {{**onnx_runtime.CPU_ARENA, "initial_chunk_size_bytes": 32 << 20}}
        engine = Engine.from_onnx({str(lite_fused)!r}, device="cpu", threads=1)
        small = example_arrays(64, 96)
        engine.runtime.run(*small)
        large = example_arrays(768, 768)
        size = int(open("/proc/self/statm").read().split()[0]) * resource.getpagesize()
        resource.setrlimit(resource.RLIMIT_AS, (size + (64 << 20), resource.RLIM_INFINITY))
        try:
            engine.runtime.run(*large)
        except RuntimeError as error:
            print("FAILED", "out of memory" in str(error), "fixed H/W" not in str(error))
        else:
            print("RAN")
        resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        print("AFTER", engine.runtime.run(*small).shape)
    """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert "FAILED True True" in done.stdout, done.stdout + done.stderr[-2000:]
    assert "AFTER (1, 1, 64, 96)" in done.stdout, done.stdout + done.stderr[-2000:]


def test_adopted_options_give_the_previous_options_depth(lite_fused):
    rgb, sparse = example_arrays(72, 100, seed=3)  # not a multiple of 16: the graph pads
    feeds = dict(zip(INPUT_NAMES, (rgb, sparse)))
    adopted = onnx_runtime.open_session(lite_fused, Device("cpu"), threads=1)
    previous_options = ort.SessionOptions()  # open_session's options before the shared arena
    previous_options.enable_mem_pattern = False
    previous_options.intra_op_num_threads = 1
    previous_options.inter_op_num_threads = 1
    previous = ort.InferenceSession(str(lite_fused), previous_options, providers=["CPUExecutionProvider"])
    assert previous.get_session_options().enable_cpu_mem_arena
    for _ in range(2):  # the second run reuses the arena's chunks
        ours, theirs = adopted.run(None, feeds), previous.run(None, feeds)
        assert len(ours) == len(theirs)
        for mine, reference in zip(ours, theirs):
            np.testing.assert_array_equal(mine, reference)
    layout = read_onnx_refinement(lite_fused)
    depth = onnx_runtime.run_session(adopted, layout, rgb, sparse)
    np.testing.assert_array_equal(depth, onnx_runtime.run_session(previous, layout, rgb, sparse))


def test_workspace_keeps_one_buffer_per_plane_and_hands_out_its_start():
    workspace = dacspn_cpu.Workspace()
    large = workspace.plane("centre", (6, 8))
    small = workspace.plane("centre", (3, 4))  # the coarser stage's grid: the same memory, not a new array
    assert small.shape == (3, 4) and small.flags.c_contiguous and small.dtype == np.float32
    assert np.shares_memory(large, small) and workspace.nbytes == 6 * 8 * 4
    grown = workspace.plane("centre", (7, 8))
    assert grown.shape == (7, 8) and workspace.nbytes == 7 * 8 * 4


def _refinement_inputs(layout: RefinementLayout, height: int, width: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    flat = [rng.uniform(1, 80, (1, 1, height, width)).astype(np.float32),
            np.where(rng.random((1, 1, height, width)) < 0.1, rng.uniform(1, 80, (1, 1, height, width)),
                     0).astype(np.float32)]
    for dilation in layout.dilations:
        grid = (height // dilation, width // dilation)
        flat += [rng.normal(size=(1, k * k - 1, *grid)).astype(np.float32) for k in layout.kernel_sizes]
        flat.append(rng.dirichlet(np.ones(len(layout.kernel_sizes)), grid).transpose(2, 0, 1)[None].astype(np.float32))
    return flat


def test_propagation_in_a_reused_workspace_equals_a_fresh_one_as_the_region_changes():
    if dacspn_cpu.available() is not None:
        pytest.skip(dacspn_cpu.available())
    layout = RefinementLayout((2, 1), (3, 5), 2)
    workspace = dacspn_cpu.Workspace()
    for index, (height, width) in enumerate([(16, 24), (8, 24), (12, 20), (16, 24)]):  # an ROI that moves
        flat = _refinement_inputs(layout, height, width, seed=index)
        reused = dacspn_cpu.depth_from_refinement_inputs([a.copy() for a in flat], layout, height, width, 1, workspace)
        fresh = dacspn_cpu.depth_from_refinement_inputs([a.copy() for a in flat], layout, height, width, 1)
        np.testing.assert_array_equal(reused, fresh)
    largest = dacspn_cpu.Workspace()  # what the largest frame alone needs: the smaller ones add nothing
    dacspn_cpu.depth_from_refinement_inputs(_refinement_inputs(layout, 16, 24, seed=0), layout, 16, 24, 1, largest)
    assert workspace.nbytes == largest.nbytes
