"""``NVFP4Linear``: a drop-in ``nn.Linear`` replacement whose weight is stored in NVFP4.

Two execution modes:

- ``activations="nvfp4"`` (W4A4): the input is quantized to NVFP4 on every call, with a static
  input global scale when one is known (calibrated checkpoints) and a dynamic per-call one
  (``448*6/amax(x)``) otherwise, then ``torch.ops.nvfp4.gemm`` multiplies the two.
- ``activations="bf16"`` (W4A16, weight-only): the dense input goes straight to
  ``torch.ops.nvfp4.gemm_w4a16``.

Buffers (all registered, so ``state_dict`` / ``.to(device)`` work):

- ``weight``               uint8 [N, K/2], two E2M1 codes per byte
- ``weight_scale``         float8_e4m3fn block scales in the *swizzled* 128x4 layout: it is what
                           the GEMM kernels read, so no per-call re-layout is needed
- ``weight_alpha``         float32 [1] or [N]: ``1/gs_w``, the decode-direction weight global
                           scale the GEMM epilogue multiplies by (ModelOpt's ``weight_scale_2``)
- ``input_global_scale``   float32 [1], encode direction; ``None`` = dynamic (W4A4 only)
- ``bias``                 optional, in the dtype of the original layer

The weight global scale is held in the decode direction because that is what the kernels use:
a ModelOpt ``weight_scale_2`` is then kept bit for bit, and a compressed-tensors / RTN ``gs`` is
turned into ``1/gs`` by one float32 division -- the same division our checkpoint writer uses, so a
layer quantized in memory and the same layer reloaded from either format are bit-identical.

Fused projections (q/k/v, gate/up) whose shards were quantized with *different* global scales are
kept exact: each shard's codes and block scales are concatenated unchanged, and
``weight_alpha`` becomes a per-output-column vector, which turns into a per-column
``alpha`` for the GEMM epilogue (the ops accept ``alpha`` with 1 or N elements). The alternative,
re-quantizing all shards to one shared global scale as vLLM does at load time, changes the codes
and loses precision in the shards with the smaller range.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from nvfp4_kernels import _global_scale, _scales, api
from nvfp4_kernels import ops as _ops  # the op entry points (eager fast path, torch.ops under compile)
from nvfp4_kernels import reference as ref
from nvfp4_kernels import layout
from nvfp4_kernels.layout import BLOCK

ACTIVATIONS = ("nvfp4", "bf16")
_COMPUTE_DTYPES = (torch.bfloat16, torch.float16)


def _positive_f32(value, device, what: str) -> torch.Tensor:
    """A float32 vector from a tensor/float; refuses zero, negative, inf or NaN entries
    (the shared check of nvfp4_kernels._scales; this is construction time, not the hot path)."""
    return _scales.as_scale_tensor(what, value, device)


def weight_alpha_from_global_scale(gs) -> torch.Tensor:
    """1/gs in float32: the one division every path (RTN, loaders, writer) uses."""
    gs = gs.float() if isinstance(gs, torch.Tensor) else torch.tensor(float(gs))
    return torch.ones((), dtype=torch.float32, device=gs.device) / gs


# Buffers whose dtype is part of the format: Module.to(dtype)/.half() must only move them.
_FIXED_DTYPE_BUFFERS = ("weight", "weight_scale", "weight_alpha", "input_global_scale")


class NVFP4Linear(nn.Module):
    """y = x @ dequant(W)^T (+ bias) with W in NVFP4; see the module docstring for the layout."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True, *,
                 activations: str = "nvfp4", device=None, bias_dtype=torch.bfloat16,
                 compute_dtype: torch.dtype = torch.bfloat16, backend: str | None = None):
        super().__init__()
        if activations not in ACTIVATIONS:
            raise ValueError(f"activations: must be one of {ACTIVATIONS}, got {activations!r}")
        for name, v in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"{name}: expected a non-negative int, got {v!r}")
        if in_features % BLOCK:
            raise ValueError(f"in_features: must be a multiple of {BLOCK} for NVFP4, got "
                             f"{in_features}")
        if compute_dtype not in _COMPUTE_DTYPES:
            raise ValueError(f"compute_dtype: must be one of {_COMPUTE_DTYPES}, got "
                             f"{compute_dtype}")
        self.in_features, self.out_features = in_features, out_features
        self.activations = activations
        # float32 inputs are cast to this for the GEMM (the kernels take bf16/fp16 operands).
        self.compute_dtype = compute_dtype
        self.backend = backend
        rows, cols = layout.swizzled_shape(out_features, in_features // BLOCK)
        self.register_buffer("weight", torch.zeros(out_features, in_features // 2,
                                                   dtype=torch.uint8, device=device))
        self.register_buffer("weight_scale", torch.zeros(rows, cols, dtype=torch.float8_e4m3fn,
                                                         device=device))
        self.register_buffer("weight_alpha", torch.ones(1, device=device))
        self.register_buffer("input_global_scale", None)
        self.register_buffer("bias", torch.zeros(out_features, dtype=bias_dtype, device=device)
                             if bias else None)

    # ----------------------------------------------------------------------------------------
    # Construction
    # ----------------------------------------------------------------------------------------

    @classmethod
    def from_quantized(cls, weight: torch.Tensor, weight_scale: torch.Tensor, *,
                       weight_global_scale=None, weight_alpha=None,
                       bias: torch.Tensor | None = None, activations: str = "nvfp4",
                       input_global_scale=None, scale_layout: str = "linear",
                       **kwargs) -> "NVFP4Linear":
        """Wrap already-quantized tensors (codes and block scales are kept bit for bit).

        weight: uint8 [N, K/2]; weight_scale: e4m3, ``linear`` [N, K/16] or ``swizzled``.
        Exactly one of weight_global_scale (encode direction, compressed-tensors style) or
        weight_alpha (= 1/gs, ModelOpt's ``weight_scale_2``), each one value or one per row.
        input_global_scale: encode-direction gs of the activations (W4A4); None = dynamic.
        """
        if weight.dtype != torch.uint8 or weight.dim() != 2:
            raise ValueError(f"weight: expected uint8 [N, K/2], got shape {tuple(weight.shape)}, "
                             f"dtype {weight.dtype}")
        n, k = weight.shape[0], weight.shape[1] * 2
        scale = weight_scale
        if scale.dtype != torch.float8_e4m3fn:
            raise ValueError(f"weight_scale: expected float8_e4m3fn, got {scale.dtype}")
        if scale_layout == "linear":
            if tuple(scale.shape) != (n, k // BLOCK):
                raise ValueError(f"weight_scale: expected linear shape ({n}, {k // BLOCK}) for a "
                                 f"[{n}, {k}] weight, got {tuple(scale.shape)}")
            scale = layout.swizzle_scales(scale.contiguous())
        elif scale_layout == "swizzled":
            if tuple(scale.shape) != layout.swizzled_shape(n, k // BLOCK):
                raise ValueError(f"weight_scale: expected swizzled shape "
                                 f"{layout.swizzled_shape(n, k // BLOCK)}, got {tuple(scale.shape)}")
        else:
            raise ValueError(f"scale_layout: must be 'linear' or 'swizzled', got {scale_layout!r}")
        if (weight_global_scale is None) == (weight_alpha is None):
            raise ValueError("pass exactly one of weight_global_scale or weight_alpha")
        if weight_alpha is None:
            gs = _positive_f32(weight_global_scale, weight.device, "weight_global_scale")
            weight_alpha = weight_alpha_from_global_scale(gs)
        alpha = _positive_f32(weight_alpha, weight.device, "weight_alpha")
        if alpha.numel() not in (1, n):
            raise ValueError(f"weight global scale: expected 1 or {n} values, got {alpha.numel()}")
        if bias is not None:
            kwargs.setdefault("bias_dtype", bias.dtype)
        mod = cls(k, n, bias is not None, activations=activations, device=weight.device, **kwargs)
        mod.weight.copy_(weight)
        mod.weight_scale.copy_(scale)
        mod.weight_alpha = alpha.clone()
        if bias is not None:
            if tuple(bias.shape) != (n,):
                raise ValueError(f"bias: expected shape ({n},), got {tuple(bias.shape)}")
            mod.bias.copy_(bias)
        mod.set_input_global_scale(input_global_scale)
        return mod

    @classmethod
    def from_linear(cls, linear: nn.Linear, activations: str = "nvfp4", input_global_scale=None,
                    *, weight_global_scale=None, **kwargs) -> "NVFP4Linear":
        """Round-to-nearest quantization of ``linear.weight`` (docs/format.md), on its device.

        input_global_scale: static activation gs for W4A4 (``448*6/calibrated_amax``); None
        quantizes activations with a per-call gs. Refused with ``activations="bf16"``.
        weight_global_scale: override the weight gs (e.g. one shared by fused siblings).
        """
        if not isinstance(linear, nn.Linear):
            raise TypeError(f"linear: expected torch.nn.Linear, got {type(linear).__name__}")
        w = linear.weight.detach()
        if w.shape[1] % BLOCK:
            raise ValueError(f"linear: in_features must be a multiple of {BLOCK} for NVFP4, got "
                             f"{w.shape[1]} (weight {tuple(w.shape)})")
        q = api.quantize(w, weight_global_scale, scale_layout="swizzled")
        bias = None if linear.bias is None else linear.bias.detach()
        return cls.from_quantized(q.data, q.scale, weight_global_scale=q.global_scale, bias=bias,
                                  activations=activations, input_global_scale=input_global_scale,
                                  scale_layout="swizzled", **kwargs)

    @classmethod
    def cat(cls, shards: list["NVFP4Linear"]) -> "NVFP4Linear":
        """Fuse shards along the output dim (q/k/v, gate/up) without touching their codes.

        Different weight global scales become a per-column ``weight_alpha``. Activations are
        shared by all shards, so one input gs is kept: the smallest (largest calibrated amax),
        which never clips a shard's calibrated range -- vLLM's ``input_scale.max()`` choice.
        """
        if not shards:
            raise ValueError("shards: need at least one NVFP4Linear")
        first = shards[0]
        for s in shards[1:]:
            if s.in_features != first.in_features or s.activations != first.activations:
                raise ValueError("shards: all must share in_features and activations; got "
                                 f"{s.in_features}/{s.activations} vs "
                                 f"{first.in_features}/{first.activations}")
            if (s.bias is None) != (first.bias is None):
                raise ValueError("shards: either all or none must have a bias")
        k = first.in_features
        scales = [layout.unswizzle_scales(s.weight_scale, s.out_features, k // BLOCK) for s in shards]
        alpha = torch.cat([s.weight_alpha.expand(s.out_features) for s in shards])
        if bool(torch.all(alpha == alpha[0])):
            alpha = alpha[:1].clone()  # one shared scale: keep the scalar fast path
        statics = [s.input_global_scale for s in shards if s.input_global_scale is not None]
        if statics and len(statics) != len(shards):
            raise ValueError("shards: either all or none must have a static input_global_scale")
        in_gs = torch.stack([t.reshape(()) for t in statics]).min() if statics else None
        bias = torch.cat([s.bias for s in shards]) if first.bias is not None else None
        return cls.from_quantized(torch.cat([s.weight for s in shards]), torch.cat(scales),
                                  weight_alpha=alpha, bias=bias, activations=first.activations,
                                  input_global_scale=in_gs, compute_dtype=first.compute_dtype,
                                  backend=first.backend)

    def set_input_global_scale(self, gs) -> None:
        """Static activation gs (encode direction) for W4A4, or None for per-call dynamic."""
        if gs is None:
            self.input_global_scale = None
            return
        if self.activations != "nvfp4":
            raise ValueError("input_global_scale: only meaningful with activations='nvfp4' "
                             "(this layer is weight-only)")
        t = _positive_f32(gs, self.weight.device, "input_global_scale")
        if t.numel() != 1:
            raise ValueError(f"input_global_scale: expected one value, got {t.numel()}")
        self.input_global_scale = t

    @property
    def weight_global_scale(self) -> torch.Tensor:
        """Encode-direction weight gs (1/weight_alpha), for inspection."""
        return torch.ones((), device=self.weight_alpha.device) / self.weight_alpha

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # weight_alpha may be [1] or [N] and input_global_scale may come or go: size the buffers
        # to what the state dict holds before the default copy. The scales are validated first
        # (the same check as construction), so a bad state dict changes nothing in this layer.
        alpha = state_dict.get(prefix + "weight_alpha")
        in_gs = state_dict.get(prefix + "input_global_scale")
        if alpha is not None:
            _scales.check_scale_tensor(prefix + "weight_alpha", alpha,
                                       numel=(1, self.out_features))
        if in_gs is not None:
            if self.activations != "nvfp4":
                raise ValueError(f"{prefix}input_global_scale: only meaningful with "
                                 "activations='nvfp4' (this layer is weight-only)")
            _scales.check_scale_tensor(prefix + "input_global_scale", in_gs, numel=(1,))
        if alpha is not None and alpha.shape != self.weight_alpha.shape:
            self.weight_alpha = torch.empty_like(alpha, device=self.weight.device)
        if in_gs is not None and self.input_global_scale is None:
            self.input_global_scale = torch.empty_like(in_gs, device=self.weight.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def _apply(self, fn, recurse=True):
        # Module.to(torch.bfloat16) would cast every floating buffer, e4m3 scales and float32
        # global scales included; those only move device. The bias follows the model dtype.
        before = {n: self._buffers[n] for n in _FIXED_DTYPE_BUFFERS if self._buffers[n] is not None}
        super()._apply(fn, recurse)
        for name, old in before.items():
            new = self._buffers[name]
            if new.dtype != old.dtype:
                self._buffers[name] = old.to(new.device)
        return self

    # ----------------------------------------------------------------------------------------
    # Use
    # ----------------------------------------------------------------------------------------

    def dequantize_weight(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The weight this layer multiplies by, [N, K] in `dtype` (per-column scale applied)."""
        w = ref.dequantize_unscaled(self.weight, self.weight_scale, "swizzled")
        return (w * self.weight_alpha.reshape(-1, 1)).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # The decode hot path: every step below is one or two C calls; argument checks happen
        # once, in the op (this layer's own buffers were checked when they entered it).
        if x.shape[-1] != self.in_features:
            raise ValueError(f"x: expected last dim {self.in_features}, got shape "
                             f"{tuple(x.shape)}")
        flat = x.dim() == 2
        x2 = x if flat else x.reshape(math.prod(x.shape[:-1]), self.in_features)  # K = 0 works
        x_dtype = x.dtype
        if x_dtype in _COMPUTE_DTYPES:
            out_dtype = x_dtype
        else:
            out_dtype = self.compute_dtype
            if self.activations == "bf16":
                x2 = x2.to(out_dtype)
        if not x2.is_contiguous():
            x2 = x2.contiguous()
        # Buffers read from the dict: each `self.<buffer>` goes through nn.Module.__getattr__,
        # a Python-level fallback that costs about a microsecond per read on a decode host.
        buffers = self._buffers
        weight_alpha = buffers["weight_alpha"]
        if self.activations == "bf16":
            y = _ops.gemm_w4a16(x2, buffers["weight"], buffers["weight_scale"], weight_alpha,
                                "swizzled", out_dtype, buffers["bias"], self.backend)
        else:
            in_gs = buffers["input_global_scale"]
            if in_gs is None:  # dynamic: this call's own scale, computed on the device by the
                # same op that quantizes, which also gives alpha = weight_alpha / that scale
                data, scale, _, alpha = _ops.quantize_computed_scale(
                    x2, "swizzled", weight_alpha, self.backend)
            else:
                alpha = self._static_alpha(weight_alpha, in_gs)
                data, scale = _ops.quantize(x2, in_gs, "swizzled", self.backend)
            y = _ops.gemm(data, buffers["weight"], scale, buffers["weight_scale"], alpha,
                          out_dtype, buffers["bias"], self.backend)
        if not flat:
            y = y.reshape(*x.shape[:-1], self.out_features)
        return y if out_dtype == x_dtype else y.to(x_dtype)

    def _static_alpha(self, wa: torch.Tensor, in_gs: torch.Tensor) -> torch.Tensor:
        """weight_alpha / input_global_scale, the W4A4 GEMM's alpha with a static input scale.

        Both are buffers that change only when reloaded, so eagerly the quotient is kept and
        recomputed when either buffer is replaced or written in place (version counters). While
        torch.compile traces or a CUDA graph is captured it is computed afresh, so the graph
        reads the live buffers (weights reloaded in place after capture stay correct)."""
        if _global_scale.in_graph(wa):
            return wa / in_gs
        try:
            versions = (wa._version, in_gs._version)
        except RuntimeError:  # inference tensors have no version counter: never cache
            return wa / in_gs
        cached = self.__dict__.get("_alpha_cache")
        if cached is None or cached[0] is not wa or cached[1] is not in_gs or \
                cached[2] != versions:
            cached = (wa, in_gs, versions, wa / in_gs)
            self.__dict__["_alpha_cache"] = cached
        return cached[3]

    def extra_repr(self) -> str:
        act = "W4A16 (weight-only)" if self.activations == "bf16" else (
            "W4A4, static input scale" if self.input_global_scale is not None
            else "W4A4, dynamic input scale")
        gs = "per-column" if self.weight_alpha.numel() > 1 else "per-tensor"
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}, {act}, {gs} weight global scale")
