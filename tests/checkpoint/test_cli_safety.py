"""quantize-checkpoint with real files: it never deletes what it did not create, cleans up after
itself (SIGKILL, SIGTERM), and turns every failure into one ``error: <path>: <reason>`` line with
exit code 2. Also: the writer refuses what the loaders would refuse."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from nvfp4_kernels import checkpoint
from nvfp4_kernels.checkpoint import rtn as cq
from nvfp4_kernels.cli import main
from tests.checkpoint.test_quantize_checkpoint import make_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def run_cli(capsys, *args):
    rc = main(["quantize-checkpoint", *map(str, args), "--quiet"])
    out = capsys.readouterr()
    return rc, out.out, out.err


def only_error_line(err: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    return lines[0]


@pytest.fixture(scope="module")
def src(tmp_path_factory):
    path = tmp_path_factory.mktemp("ckpt") / "in"
    make_checkpoint(path, layers=1, shards=2)
    return path


def copy_dir(src: Path, dst: Path) -> Path:
    import shutil
    shutil.copytree(src, dst)
    return dst


def leftovers(parent: Path, name: str) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith(f".{name}."))


# ---------------------------------------------------------------------------------------------
# Never delete what it did not create
# ---------------------------------------------------------------------------------------------

def test_directory_appearing_in_out_mid_run_is_kept(src, tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    real = cq._copy_other_files

    def someone_else_writes(in_dir, tmp, skip):
        (out / "theirs").mkdir(parents=True)
        (out / "theirs" / "data.txt").write_text("not yours")
        real(in_dir, tmp, skip)

    monkeypatch.setattr(cq, "_copy_other_files", someone_else_writes)
    rc, _, err = run_cli(capsys, src, out, "--format", "modelopt")
    assert rc == 2
    assert only_error_line(err).startswith(f"error: {out}: ")
    assert (out / "theirs" / "data.txt").read_text() == "not yours"
    assert sorted(p.name for p in out.iterdir()) == ["theirs"]
    assert leftovers(tmp_path, "out") == []  # our partial output was removed


def test_overwrite_replaces_only_after_success(src, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    rc, _, _ = run_cli(capsys, src, out, "--format", "compressed-tensors", "--overwrite")
    assert rc == 0 and not (out / "old.txt").exists() and (out / "config.json").is_file()
    assert leftovers(tmp_path, "out") == []


def test_out_that_is_a_file_is_refused(src, tmp_path, capsys):
    out = tmp_path / "out"
    out.write_text("a file")
    rc, _, err = run_cli(capsys, src, out, "--format", "modelopt", "--overwrite")
    assert rc == 2 and only_error_line(err) == f"error: {out}: exists and is not a directory"
    assert out.read_text() == "a file"


_KILL_SCRIPT = textwrap.dedent("""
    import os, signal, sys
    from nvfp4_kernels.checkpoint import rtn as cq
    from nvfp4_kernels.cli import main
    sig = getattr(signal, sys.argv[3])
    real = cq._copy_other_files
    def die(in_dir, tmp, skip):
        real(in_dir, tmp, skip)
        os.kill(os.getpid(), sig)  # mid-run: shards written, OUT not yet published
    cq._copy_other_files = die
    sys.exit(main(["quantize-checkpoint", sys.argv[1], sys.argv[2], "--format", "modelopt",
                   "--quiet", "--device", "cpu"]))
""")


def _run_and_signal(src, out, sig):
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(src), str(out), sig],
                          capture_output=True, text=True, timeout=300, env=env, cwd=ROOT)


def test_sigkill_leaves_a_partial_that_the_next_run_removes(src, tmp_path, capsys):
    out = tmp_path / "out"
    proc = _run_and_signal(src, out, "SIGKILL")
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    stale = leftovers(tmp_path, "out")
    assert len(stale) == 1 and ".partial-" in stale[0] and not out.exists()
    # a live writer's partial (locked) is never touched by the cleanup
    live = cq._Partial(tmp_path / "other")
    rc, _, _ = run_cli(capsys, src, out, "--format", "modelopt")
    assert rc == 0 and (out / "hf_quant_config.json").is_file()
    assert leftovers(tmp_path, "out") == []
    assert cq.clean_stale_partials(tmp_path / "other") == [] and live.path.is_dir()
    live.discard()
    assert not live.path.exists()


def test_sigterm_removes_the_partial_output(src, tmp_path):
    out = tmp_path / "out"
    proc = _run_and_signal(src, out, "SIGTERM")
    assert proc.returncode == 128 + signal.SIGTERM, proc.stderr
    assert "partial output removed" in proc.stderr and "Traceback" not in proc.stderr
    assert leftovers(tmp_path, "out") == [] and not out.exists()


def test_stale_partial_of_an_old_pid_style_is_removed(tmp_path):
    # A partial without lock file whose PID no longer exists (e.g. written by an older version).
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True)
    dead = tmp_path / f".out.partial-{int(proc.stdout)}"
    dead.mkdir()
    (dead / "model.safetensors").write_bytes(b"x")
    assert cq.clean_stale_partials(tmp_path / "out") == [dead] and not dead.exists()


# ---------------------------------------------------------------------------------------------
# Failures: one line naming the file, exit code 2, nothing left behind
# ---------------------------------------------------------------------------------------------

def _truncate(path: Path, keep: int):
    data = path.read_bytes()
    path.write_bytes(data[:keep] if keep >= 0 else data[:keep])


@pytest.mark.parametrize("damage, where, reason", [
    (lambda d: _truncate(d / "model-00001-of-00002.safetensors", -100),
     "model-00001-of-00002.safetensors", "truncated or corrupt"),
    (lambda d: _truncate(d / "model-00002-of-00002.safetensors", 5),
     "model-00002-of-00002.safetensors", "truncated or corrupt"),
    (lambda d: (d / "model.safetensors.index.json").write_text("{\n"),
     "model.safetensors.index.json", "not valid JSON"),
    (lambda d: (d / "model.safetensors.index.json").write_text('{"metadata": {}}'),
     "model.safetensors.index.json", "no 'weight_map'"),
    (lambda d: (d / "config.json").write_text("{oops"), "config.json", "not valid JSON"),
])
def test_broken_inputs_name_the_file(src, tmp_path, capsys, damage, where, reason):
    d = copy_dir(src, tmp_path / "in")
    damage(d)
    rc, _, err = run_cli(capsys, d, tmp_path / "out", "--format", "modelopt")
    line = only_error_line(err)
    assert rc == 2 and line.startswith(f"error: {d / where}: ") and reason in line, line
    assert not (tmp_path / "out").exists() and leftovers(tmp_path, "out") == []


def test_index_pointing_at_the_wrong_shard(src, tmp_path, capsys):
    d = copy_dir(src, tmp_path / "in")
    index = json.loads((d / "model.safetensors.index.json").read_text())
    name = "model.norm.weight"
    shards = sorted(set(index["weight_map"].values()))
    index["weight_map"][name] = next(s for s in shards if s != index["weight_map"][name])
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    rc, _, err = run_cli(capsys, d, tmp_path / "out", "--format", "modelopt")
    line = only_error_line(err)
    assert rc == 2 and line.startswith(f"error: {d / 'model.safetensors.index.json'}: maps "
                                       f"{name} to ")


def test_missing_input_and_bad_regex_and_no_note_on_failure(src, tmp_path, capsys):
    rc, _, err = run_cli(capsys, tmp_path / "nope", tmp_path / "out", "--format", "modelopt")
    assert rc == 2 and only_error_line(err) == f"error: {tmp_path / 'nope'}: no such file or " \
                                               "directory"  # and no --input-amax note first
    rc, _, err = run_cli(capsys, src, tmp_path / "out", "--format", "modelopt", "--include", "(")
    assert rc == 2 and only_error_line(err).startswith("error: --include: invalid regular "
                                                       "expression '('")


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_output_location(src, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        rc, _, err = run_cli(capsys, src, ro / "out", "--format", "modelopt")
    finally:
        ro.chmod(0o755)
    line = only_error_line(err)
    assert rc == 2 and str(ro) in line and "Permission denied" in line, line


def test_output_location_that_cannot_be_created(src, tmp_path, capsys):
    # works as root too: the "parent directory" of OUT is a regular file
    blocker = tmp_path / "blocker"
    blocker.write_text("a file")
    rc, _, err = run_cli(capsys, src, blocker / "out", "--format", "modelopt")
    line = only_error_line(err)
    assert rc == 2 and line == (f"error: {blocker}: is not a directory, so {blocker / 'out'} "
                                "cannot be created")
    assert blocker.read_text() == "a file"


def test_disk_full_names_the_shard(src, tmp_path, capsys, monkeypatch):
    import errno

    from nvfp4_kernels.checkpoint import io as ckpt_io

    def full(tensors, path, metadata=None):
        raise OSError(errno.ENOSPC, "No space left on device", path)

    monkeypatch.setattr(ckpt_io, "save_file", full)
    rc, _, err = run_cli(capsys, src, tmp_path / "out", "--format", "modelopt")
    line = only_error_line(err)
    assert rc == 2 and ".shard-00000.safetensors: No space left on device" in line, line
    assert leftovers(tmp_path, "out") == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("amax, match", [("inf", "input_amax: must be finite and > 0, got inf"),
                                         ("0", "input_amax: must be finite and > 0, got 0.0"),
                                         ("1e-45", "input_amax: 1e-45 gives an activation global "
                                                   "scale 448*6/input_amax = inf")])
def test_writer_refuses_what_the_loader_would(src, tmp_path, capsys, amax, match):
    rc, _, err = run_cli(capsys, src, tmp_path / "out", "--format", "modelopt", "--input-amax",
                         amax)
    assert rc == 2 and only_error_line(err).startswith(f"error: {match}")
    assert not (tmp_path / "out").exists()


def test_writer_checks_every_scale_it_writes():
    data = torch.zeros(4, 8, dtype=torch.uint8)
    scale = torch.zeros(4, 1, dtype=torch.float8_e4m3fn)
    with pytest.raises(checkpoint.CheckpointFormatError,
                       match=r"m\.weight_global_scale: must be finite and > 0, got inf"):
        checkpoint.conventions.write_linear("m", "compressed-tensors", data, scale,
                                        torch.tensor(float("inf")))
    with pytest.raises(checkpoint.CheckpointFormatError, match=r"m\.input_scale: must be finite"):
        checkpoint.conventions.write_linear("m", "modelopt", data, scale, torch.tensor(2.0),
                                        torch.tensor(0.0))


def test_compressed_tensors_without_config_warns(tmp_path, capsys):
    d = tmp_path / "in"
    d.mkdir()
    save_file({"layer.weight": torch.randn(32, 64).bfloat16()}, str(d / "model.safetensors"))
    rc, out, err = run_cli(capsys, d, tmp_path / "out", "--format", "compressed-tensors",
                           "--activations", "bf16")
    assert rc == 0 and "warning: " in err and "no config.json" in err
    assert "quantization_config" in err
    rc, out, err = run_cli(capsys, d, tmp_path / "mo", "--format", "modelopt",
                           "--activations", "bf16")
    assert rc == 0 and "warning" not in err  # hf_quant_config.json carries the config
