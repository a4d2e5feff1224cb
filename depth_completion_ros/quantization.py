"""int8 ONNX graphs: ONNX Runtime static quantization, calibrated on frames of a KITTI-layout data set.

    dcros export --checkpoint models/cdspn_x32_synth.pt --onnx cdspn_int8.onnx --int8 --calibration data/synth

`quantize_onnx` takes an fp32 graph written by `runtime.export.export_onnx` and writes a QDQ graph (ONNX
Runtime's recommended format: QuantizeLinear/DequantizeLinear pairs around the quantized operators, so the
CPU provider fuses them into int8 kernels): weights int8 per output channel, activations uint8 per tensor,
ranges from the activations seen on the calibration frames (min/max). Only the convolutions whose node
names match `nodes` are quantized; everything else stays fp32. That choice is measured, not a default of
the library: a depth network's activations carry metric depth, and 256 levels per tensor cannot hold
0-80 m to the centimetres the metrics see. For CDSPN (`INT8_NODES`), quantizing the depth branch or the
colour decoder multiplied the held-out RMSE (x2 on the synthetic drive, weights without the prior), while
DA-CSPN++'s guidance convolutions — the largest share of its FLOPs, whose outputs are normalised into
affinities — keep it: +0.1 % RMSE for 1.10x speed on the shipped default, where the colour encoder added
nothing to the speed (1.00x) and everything quantized cost +11 % MAE (`benchmarks/bench_int8.py`,
benchmarks/results/int8.md).

The quantized file keeps the fp32 graph's metadata (architecture, kwargs) and adds its precision, the
node pattern and the calibration frames, so `Engine` reports `precision: int8` for it.
"""
from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from .runtime.onnx_files import INPUT_NAMES, META_PRECISION, read_onnx_architecture, read_onnx_metadata

LOGGER = logging.getLogger(__name__)

# Which convolutions to quantize, per architecture (matched against ONNX node names such as
# "/model/refinement/stages.0/k3/k3.0/Conv"); see the module docstring and benchmarks/bench_int8.py.
INT8_NODES = {
    "cdspn": r"/refinement/",
}
META_INT8_NODES = "depth_completion_ros.int8_nodes"
META_CALIBRATION = "depth_completion_ros.calibration"
DEFAULT_CALIBRATION_FRAMES = 8


def default_int8_nodes(architecture: str | None) -> str:
    """The node pattern of `INT8_NODES` for an architecture name (e.g. cdspn_x32 -> the "cdspn" entry)."""
    for family, pattern in INT8_NODES.items():
        if architecture and architecture.startswith(family):
            return pattern
    raise ValueError(f"no measured int8 node choice for architecture {architecture!r} (known: "
                     f"{', '.join(INT8_NODES)}); pass the convolutions to quantize as a regular expression "
                     "(--int8-nodes) and measure the accuracy it costs (benchmarks/bench_int8.py)")


class CalibrationFrames:
    """ONNX Runtime's CalibrationDataReader protocol (`get_next`, `rewind`) over `count` frames spread
    evenly through a KITTI-layout split, cut to `crop` (KITTI's 352x1216 bottom crop by default), one
    frame per batch."""

    def __init__(self, root: str | Path, split: str = "train", count: int = DEFAULT_CALIBRATION_FRAMES,
                 crop: tuple[int, int] | None = (352, 1216)):
        from depth_completion_ros.data.kitti import KittiDepthCompletion

        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"calibration frame count must be a positive integer, got {count!r}")
        self.dataset = KittiDepthCompletion(root, split, crop=crop)
        total = len(self.dataset)
        self.indices = sorted(set(np.linspace(0, total - 1, min(count, total)).round().astype(int).tolist()))
        self.description = f"{len(self.indices)} frames of {Path(root)} {split}" + (
            f", crop {crop[0]}x{crop[1]}" if crop else "")
        self._position = 0

    def get_next(self) -> dict | None:
        if self._position >= len(self.indices):
            return None
        item = self.dataset[self.indices[self._position]]
        self._position += 1
        return {INPUT_NAMES[0]: item["rgb"][None].numpy(), INPUT_NAMES[1]: item["sparse"][None].numpy()}

    def rewind(self) -> None:
        self._position = 0


def quantize_onnx(fp32_path: str | Path, out_path: str | Path, calibration: CalibrationFrames,
                  nodes: str | None = None) -> tuple[Path, list[str]]:
    """Write the int8 (QDQ) version of the fp32 graph at `fp32_path` to `out_path`.

    nodes: a regular expression; the Conv nodes whose names it finds are quantized (default: the measured
    choice for the graph's architecture, `default_int8_nodes`). Returns (written path, quantized node
    names). Raises ValueError when the pattern matches no convolution.
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    fp32_path, out_path = Path(fp32_path), Path(out_path)
    architecture, _ = read_onnx_architecture(fp32_path)
    pattern_text = nodes if nodes is not None else default_int8_nodes(architecture)
    try:
        pattern = re.compile(pattern_text)
    except re.error as error:
        raise ValueError(f"int8 node pattern {pattern_text!r} is not a regular expression: {error}") from None
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dcros-int8-") as work:
        prepared = Path(work) / "prepared.onnx"
        # Shape inference and graph clean-up before quantization, as ONNX Runtime recommends; the symbolic
        # pass is skipped because the graph's height and width are dynamic.
        quant_pre_process(str(fp32_path), str(prepared), skip_symbolic_shape=True)
        convolutions = [node.name for node in onnx.load(str(prepared)).graph.node if node.op_type == "Conv"]
        chosen = [name for name in convolutions if pattern.search(name)]
        if not chosen:
            raise ValueError(f"int8 node pattern {pattern_text!r} matches none of the graph's {len(convolutions)} "
                             f"convolutions (e.g. {', '.join(convolutions[:3])})")
        quantized_tmp = Path(work) / "int8.onnx"
        calibration.rewind()
        quantize_static(str(prepared), str(quantized_tmp), calibration, quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["Conv"], nodes_to_exclude=sorted(set(convolutions) - set(chosen)),
                        per_channel=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
        graph = onnx.load(str(quantized_tmp))
        source_meta = read_onnx_metadata(fp32_path)
        source_meta.update({META_PRECISION: "int8", META_INT8_NODES: pattern_text,
                            META_CALIBRATION: calibration.description})
        del graph.metadata_props[:]
        for key, value in source_meta.items():
            entry = graph.metadata_props.add()
            entry.key, entry.value = key, value
        tmp_out = out_path.with_name(f".{out_path.name}.{os.getpid()}.tmp")
        try:
            onnx.save(graph, str(tmp_out))
            tmp_out.replace(out_path)
        finally:
            tmp_out.unlink(missing_ok=True)
    LOGGER.info("quantized %d of %d convolutions of %s to int8 (%s): %s", len(chosen), len(convolutions),
                architecture or fp32_path.name, calibration.description, out_path)
    return out_path, chosen


def int8_record(onnx_path: str | Path) -> dict:
    """{"nodes": pattern, "calibration": frames} of a graph written by `quantize_onnx`; {} for an fp32 one."""
    meta = read_onnx_metadata(onnx_path)
    if meta.get(META_PRECISION) != "int8":
        return {}
    return {"nodes": meta.get(META_INT8_NODES), "calibration": meta.get(META_CALIBRATION)}
