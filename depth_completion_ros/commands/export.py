"""`dcros export`: write a checkpoint as an ONNX graph and check it against PyTorch on one random input; with
`--beside`, the checkpoint's ONNX files beside it, which let the engine run it without PyTorch (how the shipped
models/*.onnx are made)."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a checkpoint to ONNX (inputs rgb, sparse_depth; output depth; dynamic batch/H/W)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="project checkpoint (.pt)")
    parser.add_argument("--onnx", type=Path, help="ONNX file to write (or --beside)")
    parser.add_argument("--beside", action="store_true",
                        help="write <stem>.onnx (the whole graph) and, for a CDSPN, <stem>.fused.onnx (without "
                             "DA-CSPN++'s propagation) beside the checkpoint, each checked against PyTorch: the "
                             "engine runs the checkpoint through them without PyTorch (the shipped models have them)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version (default: 17)")
    parser.add_argument("--height", type=int, default=352, help="height of the example input traced (default: 352)")
    parser.add_argument("--width", type=int, default=1216, help="width of the example input traced (default: 1216)")
    parser.add_argument("--static-hw", action="store_true",
                        help="fix height and width to the example size (batch stays dynamic)")
    parser.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")
    parser.add_argument("--refinement", choices=("graph", "fused"), default="graph",
                        help="'graph': the whole network (any ONNX runtime). 'fused' (CDSPN): the graph stops before "
                             "DA-CSPN++'s propagation, which this package's engine then runs as fused loops on the "
                             "CPU (faster; the file needs this package, e.g. as the node's onnx_path)")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="fail (exit 1) when max |onnx - torch| exceeds this many metres (default: 1e-3; "
                             "not with --int8, whose graph differs by design)")
    int8 = parser.add_argument_group("int8 (ONNX Runtime static quantization; see benchmarks/bench_int8.py "
                                     "for what it costs in accuracy before shipping one)")
    int8.add_argument("--int8", action="store_true",
                      help="write an int8 (QDQ) graph calibrated on --calibration instead of the fp32 one")
    int8.add_argument("--calibration", type=Path,
                      help="KITTI-layout data set whose frames calibrate the activation ranges (e.g. data/synth)")
    int8.add_argument("--calibration-split", default="train", help="its split (default: train)")
    int8.add_argument("--calibration-frames", type=int, default=8,
                      help="frames, spread evenly through the split, cut to their --height x --width bottom "
                           "crop (default: 8)")
    int8.add_argument("--int8-nodes", default=None,
                      help="regular expression of the Conv node names to quantize (default: the measured "
                           "choice for the architecture, quantization.INT8_NODES)")


def run(args: argparse.Namespace) -> int:
    from depth_completion_ros.models.checkpoint import load_model
    from depth_completion_ros.runtime.spec import require_torch

    require_torch("dcros export")
    if args.height < 1 or args.width < 1:
        raise ValueError(f"--height and --width must be positive, got {args.height}x{args.width}")
    if args.beside == (args.onnx is not None):
        raise ValueError("give one of --onnx FILE and --beside")
    if args.beside and (args.int8 or args.static_hw):
        raise ValueError("--beside writes the fp32 graphs with dynamic H/W: not with --int8 or --static-hw")
    if args.int8 and args.calibration is None:
        raise ValueError("--int8 needs --calibration (a KITTI-layout data set, e.g. data/synth)")
    if not args.int8 and (args.calibration is not None or args.int8_nodes is not None):
        raise ValueError("--calibration and --int8-nodes apply to --int8 only")
    if args.int8:
        return _export_int8(args)
    model, checkpoint = load_model(args.checkpoint)
    if not args.beside:
        return _export_one(args, model, checkpoint, args.onnx, args.refinement)
    from depth_completion_ros.runtime.export import refinements_beside
    from depth_completion_ros.runtime.onnx_files import onnx_beside

    return max(_export_one(args, model, checkpoint, onnx_beside(args.checkpoint, refinement), refinement)
               for refinement in refinements_beside(model))


def _export_one(args: argparse.Namespace, model, checkpoint, out: Path, refinement: str) -> int:
    """One fp32 graph of the checkpoint (recording its SHA-256 and metadata) at `out`, checked unless --no-check."""
    from depth_completion_ros.runtime.export import export_onnx, max_abs_difference_to_torch, other_size

    written = export_onnx(args.checkpoint, out, opset=args.opset, dynamic_hw=not args.static_hw,
                          example_size=(args.height, args.width), refinement=refinement)
    size_mb = written.stat().st_size / 1e6
    print(f"wrote {written} ({size_mb:.1f} MB): {checkpoint.architecture} {checkpoint.kwargs}, opset {args.opset}, "
          f"inputs rgb [B,3,H,W] float 0..1 + sparse_depth [B,1,H,W] m -> "
          f"{'depth [B,1,H,W] m' if refinement == 'graph' else 'the inputs of DA-CSPN++s propagation'}, "
          f"{'fixed ' + str(args.height) + 'x' + str(args.width) if args.static_hw else 'dynamic'} H/W")
    if args.no_check:
        return 0
    # With dynamic H/W, check at another size than the one traced, to catch a baked-in padding.
    height, width = (args.height, args.width) if args.static_hw else other_size(args.height, args.width)
    difference = max_abs_difference_to_torch(model, written, height, width)
    print(f"max |onnx - torch| on one random {height}x{width} input (fp32, CPU"
          f"{', propagation fused' if refinement == 'fused' else ''}): {difference:.3g} m")
    if not difference <= args.tolerance:  # also catches NaN
        print(f"the ONNX graph differs from PyTorch by more than {args.tolerance:g} m")
        return 1
    return 0


def _export_int8(args: argparse.Namespace) -> int:
    import tempfile

    import numpy as np
    import torch

    from depth_completion_ros.inference import Engine
    from depth_completion_ros.quantization import CalibrationFrames, quantize_onnx
    from depth_completion_ros.runtime.export import export_onnx

    calibration = CalibrationFrames(args.calibration, args.calibration_split, args.calibration_frames,
                                    crop=(args.height, args.width))
    with tempfile.TemporaryDirectory(prefix="dcros-export-") as work:
        fp32 = export_onnx(args.checkpoint, Path(work) / "fp32.onnx", opset=args.opset, dynamic_hw=not args.static_hw,
                           example_size=(args.height, args.width), check=not args.no_check,
                           refinement=args.refinement)
        written, nodes = quantize_onnx(fp32, args.onnx, calibration, args.int8_nodes)
        size_mb = written.stat().st_size / 1e6
        print(f"wrote {written} ({size_mb:.1f} MB): int8 QDQ, {len(nodes)} convolutions quantized, calibrated on "
              f"{calibration.description}")
        if args.no_check:
            return 0
        # One calibration frame through both graphs: how far int8 moves the depth (by design not zero).
        calibration.rewind()
        rgb, sparse = (torch.from_numpy(array) for array in calibration.get_next().values())
        depths = [Engine.from_onnx(path, device="cpu", threads=0).predict(rgb, sparse).numpy()
                  for path in (fp32, written)]
    difference = np.abs(depths[1] - depths[0])
    print(f"|int8 - fp32| on one calibration frame: mean {difference.mean():.3g} m, largest {difference.max():.3g} m")
    if not np.isfinite(depths[1]).all():
        print("the int8 graph returns non-finite depth")
        return 1
    return 0
