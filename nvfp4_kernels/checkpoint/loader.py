"""Build ``NVFP4Linear`` modules from ModelOpt / compressed-tensors tensors, and load whole models.

``load_model`` replaces every ``nn.Linear`` whose name has NVFP4 tensors in the checkpoint and
copies every other tensor into the model's own parameters and buffers, reading one tensor at a
time. Names must match ``model.state_dict()`` keys (what ``save_pretrained`` writes).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from nvfp4_kernels.checkpoint import config as qconfig
from nvfp4_kernels.checkpoint import conventions
from nvfp4_kernels.checkpoint.io import CheckpointReader
from nvfp4_kernels.nn import NVFP4Linear


def load_linear(tensors, prefix: str, format: str | None = None, *,
                activations: str | None = None, **kwargs) -> NVFP4Linear:
    """An NVFP4Linear from module `prefix`'s tensors in `tensors` (a dict or CheckpointReader).

    format: "modelopt" | "compressed-tensors" | None (detected from the tensor names).
    activations: "nvfp4" (W4A4; static input scale when the checkpoint has one, else dynamic),
    "bf16" (weight-only), or None: W4A4 when an input scale is present, else weight-only.
    kwargs go to NVFP4Linear (compute_dtype, backend).
    """
    if format is None:
        format = conventions.detect(tensors, prefix)
        if format is None:
            raise conventions.CheckpointFormatError(
                f"{prefix}: no NVFP4 tensors found (looked for {prefix}.weight_packed "
                f"(compressed-tensors) and {prefix}.weight_scale_2 (ModelOpt))")
    t = conventions.read_linear(tensors, prefix, format)
    if activations is None:
        activations = "nvfp4" if t.input_global_scale is not None else "bf16"
    in_gs = t.input_global_scale if activations == "nvfp4" else None
    return NVFP4Linear.from_quantized(t.weight, t.weight_scale,
                                      weight_global_scale=t.weight_global_scale,
                                      weight_alpha=t.weight_alpha, bias=t.bias,
                                      activations=activations, input_global_scale=in_gs,
                                      scale_layout="linear", **kwargs)


_LINEAR_SUFFIXES = ("weight", "weight_packed", "weight_scale", "weight_scale_2",
                    "weight_global_scale", "input_scale", "input_global_scale", "bias")


@dataclass
class LoadResult:
    replaced: list[str] = field(default_factory=list)    # modules now NVFP4Linear
    loaded: list[str] = field(default_factory=list)      # plain tensors copied into the model
    missing: list[str] = field(default_factory=list)     # model tensors absent from checkpoint
    unexpected: list[str] = field(default_factory=list)  # checkpoint tensors nothing used


def _set_module(model: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, leaf = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, leaf, module)


class _HeaderView:
    """Name -> tensor over a reader that returns *meta* tensors (shape and dtype from the shard
    header, no data read) for everything but scalars, which are read so their values can be
    checked. ``read_linear`` on it validates a module without loading its weight."""

    def __init__(self, reader):
        self.reader = reader

    def __contains__(self, name) -> bool:
        return name in self.reader

    def __getitem__(self, name: str) -> torch.Tensor:
        shape, dtype = self.reader.info(name)
        if not isinstance(dtype, torch.dtype):
            raise conventions.CheckpointFormatError(f"{name}: unsupported safetensors dtype {dtype}")
        if math.prod(shape) <= 1:
            return self.reader[name]
        return torch.empty(shape, dtype=dtype, device="meta")


def load_model(model: nn.Module, checkpoint_dir, *, strict: bool = True,
               activations: str | None = None, backend: str | None = None) -> LoadResult:
    """Load a ModelOpt or compressed-tensors NVFP4 checkpoint into `model` in place.

    Quantized ``nn.Linear`` modules become ``NVFP4Linear`` on the device of the module they
    replace; everything else is copied into the existing parameters/buffers. activations:
    override for every quantized layer; by default the checkpoint's config decides (W4A4 when it
    quantizes activations, with static scales when present and dynamic otherwise).
    strict: raise when a model tensor is missing from the checkpoint (tied weights excepted).

    All or nothing: every check (missing tensors, names, shapes, dtypes, scale values) runs on
    the shard headers and the scalar scales *before* the model is touched, so a checkpoint that
    does not fit leaves the model exactly as it was.
    """
    result = LoadResult()
    qc = qconfig.read(checkpoint_dir)
    act_q = qconfig.activations_quantized(qc)
    if activations is None and act_q is not None:
        activations = "nvfp4" if act_q else "bf16"
    with CheckpointReader(checkpoint_dir) as reader:
        # Pass 1: plan and validate; nothing in `model` changes.
        view = _HeaderView(reader)
        used = set()
        plan = []  # (module name, format, module)
        for name, mod in list(model.named_modules()):
            if not isinstance(mod, nn.Linear):
                continue
            fmt = conventions.detect(reader, name)
            if fmt is None:
                continue
            t = conventions.read_linear(view, name, fmt)
            n, k = t.weight.shape[0], t.weight.shape[1] * 2
            if (n, k) != (mod.out_features, mod.in_features):
                raise conventions.CheckpointFormatError(
                    f"{name}: checkpoint holds a [{n}, {k}] weight but the model's layer is "
                    f"[{mod.out_features}, {mod.in_features}]")
            plan.append((name, fmt, mod))
            used.update(k for k in (f"{name}.{s}" for s in _LINEAR_SUFFIXES) if k in reader)
        replaced = {name for name, _, _ in plan}
        seen_storage = {}
        state = model.state_dict(keep_vars=True)
        copies = []  # (key, target)
        for key, target in state.items():
            if key in used or key.rpartition(".")[0] in replaced:
                continue
            if key not in reader:
                result.missing.append(key)
                continue
            shape, _ = reader.info(key)
            if tuple(shape) != tuple(target.shape):
                raise conventions.CheckpointFormatError(
                    f"{key}: checkpoint shape {tuple(shape)} != model shape "
                    f"{tuple(target.shape)}")
            seen_storage[target.data_ptr()] = key
            used.add(key)
            copies.append((key, target))
        # A key absent from the checkpoint is fine when it shares storage with a loaded one
        # (tied embeddings / lm_head).
        result.missing = [k for k in result.missing
                          if state[k].data_ptr() not in seen_storage]
        result.unexpected = sorted(set(reader.keys()) - used)
        if strict and result.missing:
            raise conventions.CheckpointFormatError(
                f"{len(result.missing)} model tensor(s) not in {checkpoint_dir}: "
                f"{result.missing[:8]} (the model was left unchanged)")
        # Pass 2: load, one tensor at a time.
        for name, fmt, mod in plan:
            w = mod.weight
            compute = w.dtype if w.dtype in (torch.bfloat16, torch.float16) else torch.bfloat16
            new = load_linear(reader, name, fmt, activations=activations, backend=backend,
                              compute_dtype=compute)
            if new.bias is not None and mod.bias is not None:
                new.bias = new.bias.to(mod.bias.dtype)
            _set_module(model, name, new.to(w.device))
            result.replaced.append(name)
        for key, target in copies:
            with torch.no_grad():
                target.copy_(reader[key])
            result.loaded.append(key)
    return result
