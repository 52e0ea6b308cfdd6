"""The command line: ``info`` and ``bench`` (the README's main job) run and report real rows."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from nvfp4_kernels.cli import main


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


def test_bench_rejects_bad_shapes():
    with pytest.raises(SystemExit, match="MxNxK"):
        main(["bench", "--device", "cpu", "--shapes", "3x32"])


def test_module_entry_point_runs():
    proc = subprocess.run([sys.executable, "-m", "nvfp4_kernels", "info"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "reference" in proc.stdout
