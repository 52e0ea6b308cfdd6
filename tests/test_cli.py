"""The command line: ``info`` and ``bench`` (the README's main job) run and report real rows."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nvfp4_kernels as nk
from nvfp4_kernels.cli import build_parser, main

ROOT = Path(__file__).resolve().parents[1]


def test_info_prints_every_backend(capsys):
    assert main(["info"]) == 0
    out = capsys.readouterr().out
    for name in ("cutlass", "cuda", "triton", "reference"):
        assert name in out
    assert main(["info", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["backends"]["reference"]["available"] is True


def test_bench_writes_rows(tmp_path, capsys):
    out_json, out_csv = tmp_path / "b.json", tmp_path / "b.csv"
    assert main(["bench", "--device", "cpu", "--shapes", "3x32x64,1x16x16", "--repeats", "2",
                 "--json", str(out_json), "--csv", str(out_csv)]) == 0
    rows = json.loads(out_json.read_text())
    assert len(rows) == 8
    assert {r["op"] for r in rows} == {"quantize", "dequantize", "gemm_w4a16", "gemm_w4a4"}
    assert all(r["ms"] > 0 and r["backend"] == "reference" for r in rows)
    assert out_csv.read_text().count("\n") == 9
    assert "gemm_w4a4" in capsys.readouterr().out


@pytest.mark.parametrize("args, message", [
    (["--shapes", "3x32"], "error: --shapes: expected MxNxK, got '3x32'"),
    (["--shapes", "8x128x100"], "error: --shapes: K must be a multiple of 16"),
    (["--ops", "quantize,nope"], "error: --ops: unknown ['nope']"),
    # (the first call quantizes with a computed global scale: the quantize_computed_scale op)
    (["--backend", "cutlass", "--shapes", "2x16x16"],
     "error: quantize_computed_scale: backend='cutlass' cannot run on cpu"),
])
def test_bench_errors_are_one_line(args, message, capsys):
    assert main(["bench", "--device", "cpu", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.strip().splitlines()) == 1, err


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_bench_cuda_without_gpu(capsys):
    assert main(["bench", "--device", "cuda"]) == 2
    assert capsys.readouterr().err.startswith("error: --device: cuda requested, but torch sees "
                                              "no CUDA GPU")


def test_argparse_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["bench", "--repeats", "0"])
    assert exc.value.code == 2 and "--repeats: expected a positive integer" in \
        capsys.readouterr().err


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"nvfp4-kernels {nk.__version__}"


def test_every_option_has_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert set(sub.choices) == {"info", "bench", "quantize-checkpoint"}
    for name, p in [("", parser), *sub.choices.items()]:
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                continue
            assert action.help, f"{name or 'nvfp4-kernels'}: {action.option_strings or action.dest}"


def test_unexpected_errors_are_one_line_unless_asked(monkeypatch, capsys):
    from nvfp4_kernels.cli import info as info_cmd

    def boom(args):
        raise RuntimeError("something broke\nsecond line")

    monkeypatch.setattr(info_cmd, "run", boom)
    assert main(["info"]) == 2
    assert capsys.readouterr().err == "error: something broke second line\n"
    monkeypatch.setenv("NVFP4_CLI_TRACEBACK", "1")
    with pytest.raises(RuntimeError):
        main(["info"])


def test_module_entry_point_runs_without_warnings():
    proc = subprocess.run([sys.executable, "-m", "nvfp4_kernels", "info"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "reference" in proc.stdout
    assert "Warning" not in proc.stderr, proc.stderr  # e.g. torch's "Failed to initialize NumPy"


def test_numpy_is_a_dependency():
    # torch warns on every import without NumPy; the plain install must bring it.
    tomllib = pytest.importorskip("tomllib")
    meta = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert any(d.startswith("numpy") for d in meta["dependencies"])
    assert {"Homepage", "Documentation", "Issues"} <= set(meta["urls"])
    assert (ROOT / "nvfp4_kernels" / "py.typed").is_file()
