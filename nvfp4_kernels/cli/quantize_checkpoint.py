"""``nvfp4-kernels quantize-checkpoint IN_DIR OUT_DIR --format ...``: RTN NVFP4 checkpoint writer.

Argument parsing and reporting only; the work is in ``nvfp4_kernels.checkpoint.rtn``.
Every failure is one ``error: <path or option>: <reason>`` line on stderr and exit code 2;
SIGTERM/SIGHUP clean up the partial output like Ctrl-C does.
"""

from __future__ import annotations

import re
import signal
import sys

NO_INPUT_AMAX_NOTE = (
    "note: no --input-amax: activation scales are not written and activations are marked "
    "dynamic. nvfp4_kernels loads this; vLLM's NVFP4 W4A4 path needs static input scales (use "
    "--activations bf16 or --input-amax for vLLM).")


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "quantize-checkpoint",
        help="RTN-quantize a Hugging Face safetensors checkpoint to NVFP4",
        description="Round-to-nearest NVFP4 quantization of the linear weights of a Hugging Face "
                    "safetensors checkpoint, written in ModelOpt or compressed-tensors format. "
                    "Streams one tensor at a time; other files are copied unchanged. The output "
                    "is written to a hidden .OUT_DIR.partial-* directory and renamed onto "
                    "OUT_DIR only when complete; nothing already in OUT_DIR is ever deleted "
                    "without --overwrite. Errors: one 'error: <path>: <reason>' line, exit 2.")
    p.add_argument("in_dir", help="input checkpoint directory (unquantized safetensors)")
    p.add_argument("out_dir", help="output directory (must be empty or absent, see --overwrite)")
    p.add_argument("--format", required=True, choices=("modelopt", "compressed-tensors"),
                   help="checkpoint format to write (docs/checkpoints.md says which loaders read "
                        "which)")
    p.add_argument("--include", default=None,
                   help="regex searched in module names; only matching linears are quantized")
    p.add_argument("--exclude", default=None,
                   help="regex searched in module names; matching linears stay dense (added to "
                        "the default exclusions: embeddings, lm_head, norms, routers)")
    p.add_argument("--no-default-exclude", action="store_true",
                   help="drop the default exclusions")
    p.add_argument("--activations", choices=("nvfp4", "bf16"), default="nvfp4",
                   help="nvfp4: W4A4; bf16: weight-only W4A16 (default: nvfp4)")
    p.add_argument("--input-amax", type=float, default=None,
                   help="W4A4: write a static activation scale 448*6/AMAX for every layer "
                        "(finite, > 0). Without it no activation scales are written (dynamic "
                        "activations)")
    p.add_argument("--independent-fused-scales", action="store_true",
                   help="do not share one weight global scale across q/k/v and gate/up")
    p.add_argument("--max-shard-size", default="2GB", help="e.g. 500MB, 2GB (default 2GB)")
    p.add_argument("--device", default=None, help="quantize on this device (default: cuda if "
                                                  "available, else cpu)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a non-empty OUT_DIR (its old content is removed only after the "
                        "new one is in place)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(run=run)


class _Terminated(BaseException):
    """Raised from the SIGTERM/SIGHUP handler so the writer's cleanup runs."""


def _on_signal(signum, frame):
    raise _Terminated(signum)


def _regex(option: str, pattern):
    if pattern is None:
        return None
    try:
        re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"{option}: invalid regular expression {pattern!r} ({exc})") from None
    return pattern


def run(args) -> int:
    from nvfp4_kernels.cli import error_message

    handled = [s for s in (getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
               if s is not None]
    previous = {}
    try:
        for s in handled:
            previous[s] = signal.signal(s, _on_signal)
    except ValueError:  # not the main thread: leave signals alone
        previous = {}
    try:
        from nvfp4_kernels.checkpoint import quantize_checkpoint
        report = quantize_checkpoint(
            args.in_dir, args.out_dir, args.format, include=_regex("--include", args.include),
            exclude=_regex("--exclude", args.exclude), activations=args.activations,
            input_amax=args.input_amax, overwrite=args.overwrite,
            max_shard_size=args.max_shard_size, device=args.device,
            default_exclude=not args.no_default_exclude,
            shared_fused_scales=not args.independent_fused_scales, progress=not args.quiet)
    except _Terminated as exc:
        print(f"error: {args.out_dir}: interrupted by signal {exc.args[0]}; partial output "
              "removed", file=sys.stderr)
        return 128 + int(exc.args[0])
    except KeyboardInterrupt:
        print(f"error: {args.out_dir}: interrupted; partial output removed", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 -- every failure becomes one clear line
        print(f"error: {error_message(exc)}", file=sys.stderr)
        return 2
    finally:
        for s, h in previous.items():
            signal.signal(s, h)
    mib = 2 ** 20
    print(f"wrote {report.out_dir}: {len(report.quantized)} linear layers quantized, "
          f"{len(report.shards)} shard(s), {report.bytes_in / mib:.1f} MiB -> "
          f"{report.bytes_out / mib:.1f} MiB in {report.seconds:.1f} s")
    for module, why in sorted(report.skipped.items()):
        print(f"  kept dense: {module} ({why})")
    for w in report.warnings:
        print(f"warning: {w}", file=sys.stderr)
    if args.activations == "nvfp4" and args.input_amax is None:
        print(NO_INPUT_AMAX_NOTE, file=sys.stderr)
    return 0
