"""``nvfp4-kernels`` / ``python -m nvfp4_kernels``: one subcommand per module in this package.

Each subcommand module exposes ``add_parser(subparsers)`` (registering its parser with
``set_defaults(run=...)``); ``run(args)`` returns the exit code.
"""

from __future__ import annotations

import argparse
import importlib
import sys

SUBCOMMANDS = ("info", "bench", "quantize_checkpoint")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nvfp4-kernels",
                                     description="NVFP4 kernels for PyTorch: inspect, benchmark, "
                                                 "quantize checkpoints.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"nvfp4_kernels.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"nvfp4_kernels.cli.{name}":
                raise
            continue  # subcommand not part of this version
        module.add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.run(args) or 0


if __name__ == "__main__":
    sys.exit(main())
