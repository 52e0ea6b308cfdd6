"""The benchmark scripts import, parse their arguments, and run a tiny smoke case."""

from __future__ import annotations

import importlib.util
import subprocess
from pathlib import Path

import pytest
import torch

BENCH = Path(__file__).resolve().parents[3] / "benchmarks"


def _load(name):
    """A benchmark script as a module (they import only the package, no sibling files)."""
    spec = importlib.util.spec_from_file_location(name, BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", ["bench_gemm", "bench_quantize", "bench_dequantize",
                                  "bench_prefill", "bench_kv_cache", "bench_decode_step"])
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
    assert {r["op"] for r in rows} == {"amax", "quantize"}
    computed = [r for r in rows if r.get("scale") == "computed"]
    assert computed and all(0.5 < r["ceiling"] < 0.6 for r in computed)  # two reads of x
    assert (tmp_path / "bench_quantize.json").exists() and (tmp_path / "bench_quantize.csv").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="smoke mode is the CPU interpreter path")
def test_decode_step_smoke_through_a_checkpoint(tmp_path):
    """Tiny layers, the three recipes; NVFP4 layers made by quantize_checkpoint + load_model."""
    rows = _load("bench_decode_step").main(["--smoke", "--smoke-checkpoint", "--out",
                                            str(tmp_path)])
    steps = {r["recipe"]: r for r in rows if r["kind"] == "step"}
    assert set(steps) == {"bf16", "mixed", "nvfp4"}
    assert steps["nvfp4"]["weight_GB_projected"] < steps["mixed"]["weight_GB_projected"] < \
        steps["bf16"]["weight_GB_projected"]
    fp8 = [r for r in rows if r.get("op") == "fp8_decode"]
    assert {r["layer_kind"] for r in fp8} == {"sliding", "full"}
    assert all(r["gather_sdpa_ms"] > 0 for r in fp8)
    assert (tmp_path / "bench_decode_step.json").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="smoke mode is the CPU interpreter path")
def test_decode_attention_kernel_only_smoke(tmp_path):
    rows = _load("bench_decode_step").main(["--smoke", "--kernel-only", "--attention-backend",
                                            "triton", "--out", str(tmp_path)])
    assert rows and all(r["op"] == "fp8_decode" and r["bytes"] > 0 for r in rows)
    assert (tmp_path / "bench_decode_attention.csv").exists()


def test_dequantize_smoke(tmp_path):
    rows = _load("bench_dequantize").main(["--smoke", "--out", str(tmp_path)])
    assert {(r["op"], r["layout"]) for r in rows} == {
        (op, layout) for op in ("dequantize", "dequantize_scaled")
        for layout in ("swizzled", "linear")}
    assert (tmp_path / "bench_dequantize.csv").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="smoke mode is the CPU interpreter path")
def test_prefill_smoke(tmp_path):
    rows = _load("bench_prefill").main(["--smoke", "--out", str(tmp_path)])
    assert {r["route"] for r in rows} >= {"prefill", "fused", "summary"}  # no cuBLAS: no ratios
    assert {(r["overlap"], r["dequant"]) for r in rows if r["route"] == "prefill"} == {
        (False, "triton"), (True, "triton")}
    assert (tmp_path / "bench_prefill.csv").exists()


def test_run_device_script_parses():
    assert subprocess.run(["bash", "-n", str(BENCH / "run_device.sh")]).returncode == 0
