"""``nvfp4-kernels`` / ``python -m nvfp4_kernels``: one subcommand per module in this package.

Each subcommand module exposes ``add_parser(subparsers)`` (registering its parser with
``set_defaults(run=...)``); ``run(args)`` returns the exit code. A failure is one
``error: <path or argument>: <reason>`` line on stderr and exit code 2 (argparse's own usage
errors too); ``NVFP4_CLI_TRACEBACK=1`` adds the traceback for bug reports.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

SUBCOMMANDS = ("info", "bench", "quantize_checkpoint")
TRACEBACK_ENV = "NVFP4_CLI_TRACEBACK"


def _version() -> str:
    try:
        from importlib.metadata import version
        return version("nvfp4_kernels")
    except Exception:  # noqa: BLE001 -- not installed (source tree): the package's own number
        from nvfp4_kernels import __version__
        return __version__


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="nvfp4-kernels",
                                     description="NVFP4 kernels for PyTorch: inspect, benchmark, "
                                                 "quantize checkpoints.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}",
                        help="print the version and exit")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                       title="commands")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"nvfp4_kernels.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"nvfp4_kernels.cli.{name}":
                raise
            continue  # subcommand not part of this version
        module.add_parser(subparsers)
    return parser


def error_message(exc: BaseException) -> str:
    """One line for an exception: ``<path>: <reason>`` for OS errors, the message otherwise
    (the library's messages already start with the argument or file they are about)."""
    if isinstance(exc, OSError) and exc.filename is not None:
        where = str(exc.filename) + (f" -> {exc.filename2}" if exc.filename2 else "")
        return f"{where}: {exc.strerror or exc}"
    text = str(exc).strip()
    if isinstance(exc, KeyError) or not text:
        return f"{type(exc).__name__}: {text or 'no message'}"
    return text.splitlines()[0] if len(text.splitlines()) > 3 else " ".join(text.splitlines())


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args) or 0
    except SystemExit:
        raise
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 -- a CLI user gets one line, not a traceback
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        print(f"error: {error_message(exc)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
