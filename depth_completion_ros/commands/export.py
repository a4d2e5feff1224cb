"""`dcros export`: write a checkpoint as an ONNX graph and check it against PyTorch on one random input."""
from __future__ import annotations

import argparse
from pathlib import Path

HELP = "export a checkpoint to ONNX (inputs rgb, sparse_depth; output depth; dynamic batch/H/W)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, type=Path, help="project checkpoint (.pt)")
    parser.add_argument("--onnx", required=True, type=Path, help="ONNX file to write")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset version (default: 17)")
    parser.add_argument("--height", type=int, default=352, help="height of the example input traced (default: 352)")
    parser.add_argument("--width", type=int, default=1216, help="width of the example input traced (default: 1216)")
    parser.add_argument("--static-hw", action="store_true",
                        help="fix height and width to the example size (batch stays dynamic)")
    parser.add_argument("--no-check", action="store_true", help="skip the comparison with PyTorch")
    parser.add_argument("--tolerance", type=float, default=1e-3,
                        help="fail (exit 1) when max |onnx - torch| exceeds this many metres (default: 1e-3)")


def run(args: argparse.Namespace) -> int:
    from depth_completion_ros.inference import export_onnx, max_abs_difference_to_torch, other_size
    from depth_completion_ros.models.checkpoint import load_model

    if args.height < 1 or args.width < 1:
        raise ValueError(f"--height and --width must be positive, got {args.height}x{args.width}")
    model, checkpoint = load_model(args.checkpoint)
    written = export_onnx(model, args.onnx, opset=args.opset, dynamic_hw=not args.static_hw,
                          example_size=(args.height, args.width))
    size_mb = written.stat().st_size / 1e6
    print(f"wrote {written} ({size_mb:.1f} MB): {checkpoint.architecture} {checkpoint.kwargs}, opset {args.opset}, "
          f"inputs rgb [B,3,H,W] float 0..1 + sparse_depth [B,1,H,W] m -> depth [B,1,H,W] m, "
          f"{'fixed ' + str(args.height) + 'x' + str(args.width) if args.static_hw else 'dynamic'} H/W")
    if args.no_check:
        return 0
    # With dynamic H/W, check at another size than the one traced, to catch a baked-in padding.
    height, width = (args.height, args.width) if args.static_hw else other_size(args.height, args.width)
    difference = max_abs_difference_to_torch(model, written, height, width)
    print(f"max |onnx - torch| on one random {height}x{width} input (fp32, CPU): {difference:.3g} m")
    if not difference <= args.tolerance:  # also catches NaN
        print(f"the ONNX graph differs from PyTorch by more than {args.tolerance:g} m")
        return 1
    return 0
