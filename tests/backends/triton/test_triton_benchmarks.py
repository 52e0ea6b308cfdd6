"""The benchmark scripts import, parse their arguments, and run a tiny smoke case."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[3] / "benchmarks"


def _load(name):
    sys.path.insert(0, str(BENCH))
    try:
        spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


@pytest.mark.parametrize("name", ["bench_gemm", "bench_quantize", "bench_dequantize",
                                  "bench_prefill", "bench_kv_cache"])
def test_help_and_no_gpu_exit(name, capsys):
    module = _load(name)
    with pytest.raises(SystemExit) as exc:
        module.main(["--help"])
    assert exc.value.code == 0 and "--out" in capsys.readouterr().out
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit) as exc:
            module.main([])
        assert exc.value.code == 0


@pytest.mark.skipif(torch.cuda.is_available(), reason="smoke mode is the CPU interpreter path")
def test_quantize_smoke(tmp_path):
    rows = _load("bench_quantize").main(["--smoke", "--out", str(tmp_path)])
    assert {r["op"] for r in rows} == {"quantize"}
    assert (tmp_path / "bench_quantize.json").exists() and (tmp_path / "bench_quantize.csv").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="smoke mode is the CPU interpreter path")
def test_dequantize_smoke(tmp_path):
    rows = _load("bench_dequantize").main(["--smoke", "--out", str(tmp_path)])
    assert {(r["op"], r["layout"]) for r in rows} == {
        (op, layout) for op in ("dequantize", "dequantize_scaled")
        for layout in ("swizzled", "linear")}
    assert (tmp_path / "bench_dequantize.csv").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="smoke mode is the CPU interpreter path")
def test_prefill_smoke(tmp_path):
    rows = _load("bench_prefill").main(["--smoke", "--out", str(tmp_path)])
    assert {r["route"] for r in rows} >= {"prefill", "fused"}
    assert (tmp_path / "bench_prefill.csv").exists()


def test_run_device_script_parses():
    assert subprocess.run(["bash", "-n", str(BENCH / "run_device.sh")]).returncode == 0
