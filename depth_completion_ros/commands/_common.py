"""Arguments shared by the commands that run the pipeline (eval-bag, eval-kitti, demo)."""
from __future__ import annotations

import argparse


def add_engine_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("model")
    choice = group.add_mutually_exclusive_group()
    choice.add_argument("--checkpoint", help="a checkpoint file of this package")
    choice.add_argument("--model", default="default",
                        help="'default' (the shipped default), a shipped model name, or a registered "
                             "architecture (untrained, for timing only); default: %(default)s")
    group.add_argument("--device", default="auto", choices=("auto", "cuda", "cpu"))
    group.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16"))
    group.add_argument("--backend", default="auto", choices=("auto", "torch", "onnx"),
                       help="inference runtime; 'auto': ONNX Runtime on the CPU for the models measured faster "
                            "with it (exported once to a cache), else PyTorch; default: %(default)s")
    group.add_argument("--refinement", default="auto", choices=("auto", "graph", "fused"),
                       help="where a CDSPN's DA-CSPN++ propagation runs: 'fused' loops on the CPU (numba; same "
                            "depth, faster), 'graph' inside the network's runtime; 'auto': fused on the CPU when "
                            "numba runs (default: %(default)s)")
    group.add_argument("--threads", type=int, default=0,
                       help="CPU threads of the network; 0 = the cores this process may run on "
                            "(default: %(default)s)")


def add_pipeline_arguments(parser: argparse.ArgumentParser) -> None:
    from ..pipeline import RECTIFY_CHOICES, ROI_CHOICES, PipelineOptions  # numpy only: keeps `dcros --help` fast

    defaults = PipelineOptions()
    group = parser.add_argument_group("pipeline")
    group.add_argument("--min-depth", type=float, default=defaults.min_depth,
                       help="metres; nearer LiDAR points are dropped (default: %(default)s)")
    group.add_argument("--max-depth", type=float, default=defaults.max_depth,
                       help="metres; farther points are dropped (default: %(default)s)")
    group.add_argument("--roi", default=defaults.roi, choices=ROI_CHOICES,
                       help="run the network on the whole image, on its bottom --roi-height rows, or ('auto') "
                            "from --roi-margin rows above the top-most LiDAR return down, per frame")
    group.add_argument("--roi-height", type=int, default=defaults.roi_height)
    group.add_argument("--roi-margin", type=int, default=defaults.roi_margin,
                       help="rows above the top-most LiDAR return that roi 'auto' keeps (default: %(default)s)")
    group.add_argument("--rectify", default=defaults.rectify, choices=RECTIFY_CHOICES,
                       help="images of a raw camera (CameraInfo with lens distortion d or a rectification r): "
                            "'auto' rectifies them (not where P carries a stereo translation, as in KITTI "
                            "converters' bags of rectified images), 'true' always, 'false' never (default: "
                            "%(default)s); rectified predictions are scored in the ground truth's raw grid")
    group.add_argument("--self-check", type=float, default=0.0, metavar="FRACTION",
                       help="LiDAR hold-out self-check on every frame: hold FRACTION (e.g. 0.05) of the LiDAR "
                            "pixels out of the network's input and score the prediction there, beside the "
                            "ground-truth metrics (the scored prediction is the one made without them); "
                            "default: off")


def engine_from_args(args):
    from ..model_zoo import resolve_engine

    if args.threads < 0:
        raise ValueError(f"--threads must be >= 0 (0 = the cores available), got {args.threads}")
    return resolve_engine(args.checkpoint or args.model, device=args.device, precision=args.precision,
                          backend=args.backend, threads=args.threads, refinement=args.refinement)


def pipeline_options_from_args(args):
    from ..pipeline import PipelineOptions

    return PipelineOptions(min_depth=args.min_depth, max_depth=args.max_depth, roi=args.roi,
                           roi_height=args.roi_height, roi_margin=args.roi_margin,
                           self_check_fraction=getattr(args, "self_check", 0.0), rectify=args.rectify)
