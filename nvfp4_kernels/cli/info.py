"""``nvfp4-kernels info``: backends, GPU, compiled archs, versions (``--json`` for machines)."""

from __future__ import annotations

import json


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("info", help="what this install can run here, and why not the rest")
    p.add_argument("--json", action="store_true", help="print the nk.info() dict as JSON")
    p.set_defaults(run=run)


def run(args) -> int:
    from nvfp4_kernels import info

    report = info()
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    gpu = report["gpu"]
    print(f"nvfp4_kernels {report['version']} on {report['device']}"
          + (f" ({gpu['name']}, {gpu['capability']})" if gpu else " (no GPU)"))
    print("versions: " + ", ".join(f"{k} {v}" for k, v in report["versions"].items()))
    ext = report["extension"]
    print("extension: " + (f"loaded, archs {', '.join(ext['archs']) or '?'}" if ext["loaded"]
                           else ext["reason"]))
    print("backends:")
    for name, b in report["backends"].items():
        state = "available" if b["available"] else "unavailable"
        detail = ", ".join(b["ops"]) if b["available"] else b["reason"]
        print(f"  {name:<10} {state:<12} {detail}")
    return 0
