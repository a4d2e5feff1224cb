"""`dcros models`: every registered network with its parameter count and GFLOPs at an input size."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

HELP = "list the registered networks with parameters (M) and GFLOPs at an input size"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--height", type=int, default=352, help="input height in pixels (default: %(default)s)")
    parser.add_argument("--width", type=int, default=1216, help="input width in pixels (default: %(default)s)")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT", help="also write the table here")
    parser.add_argument("--transposed-at-output", action="store_true",
                        help="charge transposed convolutions per output pixel, as some published tables do "
                             "(default: exact, per input pixel)")


def run(args: argparse.Namespace) -> int:
    from depth_completion_ros.runtime.spec import require_torch

    torch = require_torch("dcros models (it builds every registered network)")

    from depth_completion_ros.models import build_model, describe_model, list_models
    from depth_completion_ros.models.flops import count_flops, count_parameters

    for name in ("height", "width"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name} must be a positive number of pixels, got {getattr(args, name)}")
    rows = []
    for name in list_models():
        with torch.device("meta"):  # shapes only: no weight initialisation, no memory
            model = build_model(name)
        try:
            flops = count_flops(model, args.height, args.width, transposed_at_output=args.transposed_at_output)
        except (NotImplementedError, RuntimeError):
            model = build_model(name)  # its forward pass needs real values
            flops = count_flops(model, args.height, args.width, transposed_at_output=args.transposed_at_output)
        rows.append({
            "name": name,
            "parameters": count_parameters(model),
            "flops": flops,
            "description": describe_model(name),
        })
        del model

    size = f"{args.width}x{args.height}"
    name_width = max([len("model")] + [len(row["name"]) for row in rows])
    print(f"{'model':<{name_width}}  {'params (M)':>10}  {'GFLOPs @' + size:>16}  description")
    for row in rows:
        print(f"{row['name']:<{name_width}}  {row['parameters'] / 1e6:>10.3f}  {row['flops'] / 1e9:>16.2f}  "
              f"{row['description']}")
    convention = "2 FLOPs per multiply-add; transposed convolutions charged per " + (
        "output pixel" if args.transposed_at_output else "input pixel (exact)")
    print(f"({convention})")
    if args.json is not None:
        report = {"height": args.height, "width": args.width, "flop_convention": convention, "models": rows}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2) + "\n")
        print(f"wrote {args.json}")
    return 0
