"""Round-to-nearest NVFP4 quantization of a model in memory (``quantize_model``) or of a
checkpoint on disk, streamed tensor by tensor (``quantize_checkpoint``).

Fused siblings (q/k/v, gate/up) get one shared weight global scale (from the largest amax of the
group), as ModelOpt and llm-compressor do, because vLLM fuses them into one GEMM with a single
global scale (it takes the max of the per-shard scales): separate scales would mis-scale all but
one shard there. Our own ``NVFP4Linear`` is exact either way. ``shared_fused_scales=False``
turns this off.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from nvfp4_kernels import _scales, api
from nvfp4_kernels import reference as ref
from nvfp4_kernels.checkpoint import config as qconfig
from nvfp4_kernels.checkpoint import conventions
from nvfp4_kernels.checkpoint.io import (INDEX_NAME, CheckpointReader, ShardWriter, _read_json,
                                         parse_size)
from nvfp4_kernels.checkpoint.select import Selector, fused_group, skip_reason
from nvfp4_kernels.nn import NVFP4Linear

E2M1_TIMES_E4M3 = 448.0 * 6.0


def _group_scales(amax: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Module -> shared encode-direction gs for every fused group with 2+ members."""
    groups: dict[str, list[str]] = {}
    for module in amax:
        key = fused_group(module)
        if key is not None:
            groups.setdefault(key, []).append(module)
    shared = {}
    for members in groups.values():
        if len(members) > 1:
            # global_scale() of the group's amaxes == global_scale() of the concatenated weights
            gs = ref.global_scale(torch.stack([amax[m].float().cpu() for m in members]))
            shared.update({m: gs for m in members})
    return shared


def quantize_model(model: nn.Module, include: str | None = None, exclude: str | None = None, *,
                   activations: str = "nvfp4", input_global_scales: dict | None = None,
                   default_exclude: bool = True, shared_fused_scales: bool = True,
                   backend: str | None = None) -> list[str]:
    """Replace the selected ``nn.Linear`` modules of `model` by RTN ``NVFP4Linear`` in place.

    include/exclude: regexes searched in module names (defaults keep embeddings, lm_head, norms
    and routers in high precision). input_global_scales: module name -> static activation gs
    (W4A4); layers without one quantize activations dynamically. Layers whose in_features is not
    a multiple of 16 are left as they are. Returns the names of the replaced modules.
    """
    sel = Selector(include, exclude, default_exclude)
    chosen = [(n, m) for n, m in model.named_modules()
              if isinstance(m, nn.Linear) and sel.wants(n)
              and skip_reason(tuple(m.weight.shape), m.weight.is_floating_point()) is None]
    shared = _group_scales({n: m.weight.detach().abs().amax() for n, m in chosen}) \
        if shared_fused_scales else {}
    input_global_scales = input_global_scales or {}
    for name, mod in chosen:
        w = mod.weight
        gs = shared.get(name)
        new = NVFP4Linear.from_linear(
            mod, activations, input_global_scales.get(name),
            weight_global_scale=None if gs is None else gs.to(w.device), backend=backend,
            compute_dtype=w.dtype if w.dtype in (torch.bfloat16, torch.float16)
            else torch.bfloat16)
        parent_name, _, leaf = name.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, leaf, new)
    return [n for n, _ in chosen]


@dataclass
class QuantizeReport:
    out_dir: Path
    quantized: list[str] = field(default_factory=list)   # module names
    skipped: dict[str, str] = field(default_factory=dict)  # module -> why it stayed dense
    shards: list[str] = field(default_factory=list)
    bytes_in: int = 0
    bytes_out: int = 0
    peak_shard_buffer: int = 0
    seconds: float = 0.0
    warnings: list[str] = field(default_factory=list)  # printed by the CLI as "warning: ..."


def _default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


PARTIAL_TAG = ".partial-"  # .OUT.partial-PID-XXXX: where a run writes before publishing OUT
LOCK_NAME = ".nvfp4-writer.lock"  # inside a partial dir, flock'd by the run that owns it


def _check_out_dir(in_dir: Path, out_dir: Path, overwrite: bool) -> bool:
    """Refuse an OUT that is a file, the input, or non-empty without overwrite.
    Returns whether OUT exists and holds something (that --overwrite will replace)."""
    if out_dir.is_symlink() or (out_dir.exists() and not out_dir.is_dir()):
        raise FileExistsError(f"{out_dir}: exists and is not a directory")
    if not out_dir.exists():
        return False
    if out_dir.resolve() == in_dir.resolve():
        raise ValueError(f"{out_dir}: is the input directory; write somewhere else")
    full = any(out_dir.iterdir())
    if full and not overwrite:
        raise FileExistsError(f"{out_dir}: not empty; pass --overwrite to replace it")
    return full


def _owner_alive(partial: Path) -> bool:
    """Whether the run that made `partial` still runs: its lock file is held (flock is released
    by the kernel when a process dies, SIGKILL included), or -- without a lock file, e.g. just
    before publishing -- its PID (in the name) exists."""
    lock = partial / LOCK_NAME
    try:
        import fcntl
        fd = os.open(lock, os.O_RDWR)
    except (ImportError, OSError):
        fd = None
    if fd is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return True  # someone holds it
        finally:
            os.close(fd)
        return False
    try:
        pid = int(partial.name.split(PARTIAL_TAG, 1)[1].split("-")[0])
    except (IndexError, ValueError):
        return True  # not ours to judge
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by another user
    return True


def clean_stale_partials(out_dir: Path) -> list[Path]:
    """Remove ``.OUT.partial-*`` directories next to `out_dir` whose writer process is gone
    (killed by SIGKILL, OOM, a power cut). Returns what was removed."""
    removed = []
    parent = out_dir.parent
    if not parent.is_dir():
        return removed
    for p in parent.glob(f".{out_dir.name}{PARTIAL_TAG}*"):
        if p.is_dir() and not p.is_symlink() and not _owner_alive(p):
            shutil.rmtree(p, ignore_errors=True)
            removed.append(p)
    return removed


class _Partial:
    """The run's private output directory: created next to OUT, locked for the whole run, and
    either published onto OUT by one rename or removed. Never touches anything else."""

    def __init__(self, out_dir: Path):
        for ancestor in out_dir.absolute().parents:  # nearest existing one must be a directory
            if ancestor.exists():
                if not ancestor.is_dir():
                    raise NotADirectoryError(f"{ancestor}: is not a directory, so {out_dir} "
                                             "cannot be created")
                break
        out_dir.parent.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}{PARTIAL_TAG}{os.getpid()}-",
                                          dir=out_dir.parent))
        self._lock_fd = None
        try:
            import fcntl
            self._lock_fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o600)
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except ImportError:  # pragma: no cover (non-POSIX: PID check only)
            pass

    def _unlock(self) -> None:
        if self._lock_fd is not None:
            try:
                os.unlink(self.path / LOCK_NAME)
            except FileNotFoundError:
                pass
            os.close(self._lock_fd)
            self._lock_fd = None

    def discard(self) -> None:
        self._unlock()
        shutil.rmtree(self.path, ignore_errors=True)

    def publish(self, in_dir: Path, out_dir: Path, overwrite: bool) -> None:
        """rename(partial, OUT). OUT must still be absent or empty, or, with `overwrite`, is
        re-checked (still a directory, not the input) and moved aside first; its old content is
        removed only once the new one is in place."""
        self._unlock()
        full = _check_out_dir(in_dir, out_dir, overwrite)  # re-check: OUT may have changed
        old = None
        if full:
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.replaced-", dir=out_dir.parent))
            os.rmdir(old)
            os.rename(out_dir, old)
        try:
            # Linux rename(2) replaces an *empty* directory and fails on a non-empty one, so
            # whatever appeared in OUT since the check is never deleted.
            os.rename(self.path, out_dir)
        except OSError as exc:
            if old is not None:
                os.rename(old, out_dir)
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                raise FileExistsError(f"{out_dir}: was filled by someone else during the run; "
                                      "left untouched (pass --overwrite or pick another "
                                      "directory)") from None
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)


def _copy_other_files(in_dir: Path, tmp: Path, skip: set[str]) -> None:
    """Tokenizer, generation config, chat template...: copied unchanged. Unquantized weight
    files in other formats (.bin/.pt/.pth) are not copied: they would shadow the new weights."""
    for src in in_dir.rglob("*"):
        rel = src.relative_to(in_dir)
        if src.is_dir() or str(rel) in skip or rel.parts[0].startswith("."):
            continue
        if src.suffix in (".safetensors", ".bin", ".pt", ".pth") or \
                rel.name == "pytorch_model.bin.index.json":
            continue
        (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, tmp / rel)


def quantize_checkpoint(in_dir, out_dir, format: str, *, include: str | None = None,
                        exclude: str | None = None, activations: str = "nvfp4",
                        input_amax: float | None = None, overwrite: bool = False,
                        max_shard_size="2GB", device: str | None = None,
                        default_exclude: bool = True, shared_fused_scales: bool = True,
                        progress: bool = True) -> QuantizeReport:
    """RTN-quantize a Hugging Face safetensors checkpoint directory into `format`.

    Reads one tensor at a time and writes shards of at most `max_shard_size`, into a private
    ``.OUT.partial-PID-XXXX`` directory next to `out_dir` that is renamed onto `out_dir` only when
    complete; on any failure (KeyboardInterrupt included) it is removed. OUT must be absent or
    empty, at the start *and* at the rename: what someone else puts there meanwhile is never
    deleted. `overwrite` replaces a non-empty OUT (re-checked at the rename). Partial directories
    of earlier runs whose process is gone (SIGKILL) are removed at the start.
    input_amax: W4A4 only; when given, every quantized layer gets the static activation global
    scale 448*6/input_amax. Without it no activation scales are written and the config marks
    activations dynamic (our loader computes the scale per call; vLLM needs static scales).
    """
    conventions.spec(format)
    if activations not in ("nvfp4", "bf16"):
        raise ValueError(f"activations: must be 'nvfp4' or 'bf16', got {activations!r}")
    if input_amax is not None and activations != "nvfp4":
        raise ValueError("input_amax: only meaningful with activations='nvfp4'")
    in_gs = None
    if input_amax is not None:
        # The same check the loaders apply to the scale this writes (docs/checkpoints.md).
        amax = _scales.check_scale_value("input_amax", input_amax)
        in_gs = torch.tensor(E2M1_TIMES_E4M3, dtype=torch.float32) / torch.tensor(amax)
        if not (bool(torch.isfinite(in_gs)) and float(in_gs) > 0):
            raise _scales.ScaleError(f"input_amax: {amax!r} gives an activation global scale "
                                     f"448*6/input_amax = {float(in_gs)!r}; must be finite and "
                                     "> 0")
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.exists():
        raise FileNotFoundError(f"{in_dir}: no such file or directory")
    if in_dir.is_file():
        raise NotADirectoryError(f"{in_dir}: expected a checkpoint directory, got a file")
    cfg_path = in_dir / "config.json"
    model_cfg = _read_json(cfg_path, "a model config") if cfg_path.is_file() else None
    if model_cfg and model_cfg.get("quantization_config"):
        qc_in = model_cfg["quantization_config"]
        method = qc_in.get("quant_method") if isinstance(qc_in, dict) else qc_in
        raise ValueError(f"{cfg_path}: already has a quantization_config ({method}); quantize "
                         "an unquantized checkpoint")
    shard_bytes = parse_size(max_shard_size)
    sel = Selector(include, exclude, default_exclude)
    start = time.perf_counter()
    report = QuantizeReport(out_dir)
    if model_cfg is None and format == conventions.COMPRESSED_TENSORS:
        report.warnings.append(
            f"{in_dir}: no config.json, so the output has no quantization_config anywhere "
            "(compressed-tensors keeps it only in config.json); vLLM and transformers will not "
            "recognise it as NVFP4. nvfp4_kernels.checkpoint.load_model still loads it (from the "
            "tensor names). Add the model's config.json to the input to get a complete output.")
    _check_out_dir(in_dir, out_dir, overwrite)
    reader = CheckpointReader(in_dir)
    device = device or _default_device()
    clean_stale_partials(out_dir)
    partial = _Partial(out_dir)
    tmp = partial.path
    try:
        names = reader.names()
        plan = {}  # tensor name -> module name, for the tensors we quantize
        dense_modules = []
        for name in names:
            if not name.endswith(".weight"):
                continue
            module = name[: -len(".weight")]
            shape, dtype = reader.info(name)
            if len(shape) != 2:
                continue
            if not sel.wants(module):
                dense_modules.append(module)
                continue
            why = skip_reason(shape, isinstance(dtype, torch.dtype) and dtype.is_floating_point)
            if why:
                report.skipped[module] = why
                dense_modules.append(module)
            else:
                plan[name] = module
        shared = {}
        if shared_fused_scales:
            # Only group members need a look ahead: one extra read of those tensors.
            members = {m for m in plan.values() if fused_group(m)}
            amax = {m: reader[m + ".weight"].to(device).abs().amax() for m in sorted(members)}
            shared = _group_scales(amax)
        writer = ShardWriter(tmp, shard_bytes)
        total = sum(reader.nbytes(n) for n in names)
        report.bytes_in = total
        bar = _progress(total, len(names), progress)
        for i, name in enumerate(names, 1):
            t = reader[name]
            size = t.numel() * t.element_size()
            module = plan.get(name)
            if module is None:
                writer.add(name, t)
            else:
                gs = shared.get(module)
                q = api.quantize(t.to(device), None if gs is None else gs.to(device),
                                 scale_layout="linear")
                for out_name, out in conventions.write_linear(module, format, q.data, q.scale,
                                                          q.global_scale, in_gs).items():
                    writer.add(out_name, out)
                report.quantized.append(module)
            del t
            bar.advance(size, i)
        report.shards = writer.finish()
        bar.close()
        report.bytes_out = writer.total_size
        report.peak_shard_buffer = writer.peak_buffered
        qc, hf_quant = qconfig.build(format, activations=activations,
                                     static_inputs=in_gs is not None,
                                     ignore=sorted(set(dense_modules)), version=_version())
        skip = {INDEX_NAME, "config.json", "hf_quant_config.json"}
        _copy_other_files(in_dir, tmp, skip)
        if model_cfg is not None:
            model_cfg["quantization_config"] = qc
            (tmp / "config.json").write_text(json.dumps(model_cfg, indent=2) + "\n")
        if hf_quant is not None:
            (tmp / "hf_quant_config.json").write_text(json.dumps(hf_quant, indent=4) + "\n")
        partial.publish(in_dir, out_dir, overwrite)
    except BaseException:
        partial.discard()
        raise
    finally:
        reader.close()
    report.seconds = time.perf_counter() - start
    return report


def _version() -> str:
    from nvfp4_kernels import __version__
    return __version__


class _progress:
    """tqdm bar over bytes read, with tensors done and tensors/s in the postfix."""

    def __init__(self, total_bytes: int, tensors: int, enabled: bool):
        from tqdm.auto import tqdm
        self.tensors, self.start = tensors, time.perf_counter()
        self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024,
                        desc="quantize", disable=not enabled, dynamic_ncols=True)

    def advance(self, nbytes: int, done: int) -> None:
        rate = done / max(time.perf_counter() - self.start, 1e-9)
        self.bar.set_postfix_str(f"{done}/{self.tensors} tensors, {rate:.1f} tensors/s",
                                 refresh=False)
        self.bar.update(nbytes)

    def close(self) -> None:
        self.bar.close()
