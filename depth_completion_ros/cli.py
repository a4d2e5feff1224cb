"""`dcros`: the offline command line. Each sub-command lives in `depth_completion_ros.commands.<name>`.

A command module defines `HELP` (one line), `configure(parser)` and `run(args) -> int`, and keeps
heavy imports (torch, rosbags, matplotlib) inside `run` so that `dcros --help` stays fast.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

# Sub-command name -> module under depth_completion_ros.commands, in the order `--help` lists them.
COMMANDS = {
    "demo": "demo",
    "synth": "synth",
    "metrics": "metrics",
    "models": "models",
    "export": "export",
    "kitti2bag": "kitti2bag",
    "eval-bag": "eval_bag",
    "eval-kitti": "eval_kitti",
    "play": "play",
    "train": "train",
    "adapt": "adapt",
    "prune-test": "prune_test",
    "ros-setup": "ros_setup",
}


def _available_commands():
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(f"depth_completion_ros.commands.{module_name}")
        except ModuleNotFoundError as error:
            if error.name == f"depth_completion_ros.commands.{module_name}":
                continue  # not part of this build
            raise
        yield name, module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dcros", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, module in _available_commands():
        sub = subparsers.add_parser(name, help=module.HELP, description=module.HELP)
        module.configure(sub)
        sub.set_defaults(handler=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    from .runtime.spec import PyTorchRequired

    try:
        return int(args.handler(args) or 0)
    except (FileNotFoundError, ValueError, PyTorchRequired) as error:
        # Bad input, or PyTorch needed where it is not installed: one clear line naming the problem, no traceback.
        print(f"dcros {args.command}: error: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
