"""``NVFP4``: a quantized matrix as the kernels and checkpoints see it.

A NamedTuple rather than a tensor subclass: it is what the ops take apart anyway, it costs nothing
per call, and ``torch.compile(fullgraph=True)`` traces through it (a subclass would need
``__torch_dispatch__`` machinery for no gain here).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from nvfp4_kernels import _global_scale, _scales
from nvfp4_kernels.layout import (BLOCK, swizzle_scales, swizzled_shape,
                                      unswizzle_scales)


_LAYOUTS = ("swizzled", "linear")
_SCALE_DTYPES = (torch.float8_e4m3fn, torch.uint8)  # uint8: raw e4m3 bytes, as vLLM stores some


def _describe(t) -> str:
    return f"shape {tuple(t.shape)}, dtype {t.dtype}, device {t.device}"


def _validate(data, scale, global_scale, scale_layout, shape) -> None:
    """Shape/dtype/device agreement of the five fields; no value is read from a device."""
    for name, t in (("data", data), ("scale", scale), ("global_scale", global_scale)):
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"NVFP4.{name}: expected a torch.Tensor, got {type(t).__name__}")
    if scale_layout not in _LAYOUTS:
        raise ValueError(f"NVFP4.scale_layout: must be 'swizzled' or 'linear', got "
                         f"{scale_layout!r}")
    if len(shape) == 0:
        raise ValueError("NVFP4.shape: expected at least 1 dim (the quantized last dim K), got ()")
    cols = shape[-1]
    if cols % BLOCK:
        raise ValueError(f"NVFP4.shape: the last dim K must be a multiple of {BLOCK}, got shape "
                         f"{tuple(shape)}")
    if data.dtype != torch.uint8:
        raise TypeError(f"NVFP4.data: expected uint8 (two E2M1 codes per byte), got "
                        f"{_describe(data)}")
    want = (*shape[:-1], cols // 2)
    if tuple(data.shape) != want:
        raise ValueError(f"NVFP4.data: a tensor of logical shape {tuple(shape)} needs data of "
                         f"shape {want}, got {_describe(data)}")
    if scale.dtype not in _SCALE_DTYPES:
        raise TypeError(f"NVFP4.scale: expected float8_e4m3fn (or its uint8 bytes), got "
                        f"{_describe(scale)}")
    if scale_layout == "linear":
        want = (*shape[:-1], cols // BLOCK)
        if tuple(scale.shape) != want:
            raise ValueError(f"NVFP4.scale: linear scales for logical shape {tuple(shape)} must "
                             f"have shape {want}, got {_describe(scale)}")
    else:
        rows = math.prod(shape[:-1])
        rp, cp = swizzled_shape(rows, cols // BLOCK)
        if scale.numel() != rp * cp:
            raise ValueError(f"NVFP4.scale: swizzled scales for {rows} rows x {cols // BLOCK} "
                             f"scale columns need {rp}x{cp} = {rp * cp} elements, got "
                             f"{_describe(scale)}")
    if global_scale.dtype != torch.float32 or global_scale.numel() != 1:
        raise TypeError(f"NVFP4.global_scale: expected one float32 value (0-dim), got "
                        f"{_describe(global_scale)}")
    if not (data.device == scale.device == global_scale.device):
        raise ValueError(f"NVFP4: data ({data.device}), scale ({scale.device}) and global_scale "
                         f"({global_scale.device}) must be on one device")


class _Fields(NamedTuple):
    data: torch.Tensor
    scale: torch.Tensor
    global_scale: torch.Tensor
    scale_layout: str
    shape: torch.Size


class NVFP4(_Fields):
    """A tensor of logical ``shape`` (..., K) quantized along its last dim.

    data          uint8 (..., K/2), two E2M1 codes per byte (element 2i in the low nibble)
    scale         float8_e4m3fn block scales: ``linear`` (..., K/16), or ``swizzled`` (the 128x4
                  CUTLASS layout over the flattened rows: [ceil128(R), ceil4(K/16)])
    global_scale  0-dim float32, encode direction (448*6/amax); dequantize divides by it
    scale_layout  "swizzled" or "linear"
    shape         logical shape of the unquantized tensor

    Construction checks that the fields agree (dtypes, shapes, layout, device) and raises a
    ``TypeError``/``ValueError`` naming the field otherwise. It reads no device value: a CPU
    ``global_scale`` is checked to be finite and > 0 on the spot, a GPU one only with
    ``nk.debug.set_checks(True)`` (docs/api.md, "Scale validation").
    """

    # No __slots__ = (): each instance has a __dict__ for derived per-tensor state (the cached
    # decode scale of a weight, see ``decode_scale``); the tuple fields are unchanged.

    def __new__(cls, data, scale, global_scale, scale_layout, shape):
        shape = torch.Size(shape)
        _validate(data, scale, global_scale, scale_layout, shape)
        _scales.check_entering_scale("NVFP4.global_scale", global_scale)
        return super().__new__(cls, data, scale, global_scale, scale_layout, shape)

    @classmethod
    def _from_op(cls, data, scale, global_scale, scale_layout, shape) -> "NVFP4":
        """The fields as an op produced them: consistent by construction, so not validated
        again (construction checks cost more than the quantize launch at decode sizes)."""
        return _Fields.__new__(cls, data, scale, global_scale, scale_layout, shape)

    def decode_scale(self) -> torch.Tensor:
        """1/global_scale as a float32 [1] tensor: the decode-direction scale a GEMM multiplies
        by (ModelOpt's ``weight_scale_2``), with an IEEE division.

        A weight is multiplied many times with the same global scale, so in eager mode the
        result is kept on this object and recomputed only when ``global_scale`` changes (its
        version counter moves on any in-place write). While a CUDA graph is being captured or
        torch.compile traces, it is computed afresh so the graph reads the live global scale.
        """
        gs = self.global_scale
        if _global_scale.in_graph(gs):
            return _global_scale.inverse(gs).reshape(1)
        try:
            version = gs._version
        except RuntimeError:  # inference tensors have no version counter: never cache
            return _global_scale.inverse(gs).reshape(1)
        cached = self.__dict__.get("_decode_scale")
        if cached is None or cached[0] is not gs or cached[1] != version:
            cached = (gs, version, _global_scale.inverse(gs).reshape(1))
            self.__dict__["_decode_scale"] = cached
        return cached[2]

    def _replace(self, **changes) -> "NVFP4":
        fields = self._asdict()
        unknown = set(changes) - set(fields)
        if unknown:
            raise ValueError(f"NVFP4._replace: unknown field(s) {sorted(unknown)}")
        fields.update(changes)
        if "global_scale" not in changes:  # already checked: skip the value check
            shape = torch.Size(fields["shape"])
            _validate(fields["data"], fields["scale"], fields["global_scale"],
                      fields["scale_layout"], shape)
            return _Fields.__new__(type(self), fields["data"], fields["scale"],
                                   fields["global_scale"], fields["scale_layout"], shape)
        return type(self)(**fields)

    def __repr__(self) -> str:
        gs = self.global_scale
        try:
            value = f"{float(gs.reshape(())):.6g}" if gs.device.type != "meta" else "?"
        except Exception:  # fake tensors while tracing have no value
            value = "?"
        return (f"NVFP4(shape={tuple(self.shape)}, scale_layout={self.scale_layout!r}, "
                f"device={self.device}, global_scale={value})")

    @property
    def rows(self) -> int:
        """Number of rows once leading dims are flattened."""
        return math.prod(self.shape[:-1])

    @property
    def cols(self) -> int:
        """Logical last dim K."""
        return self.shape[-1]

    @property
    def device(self) -> torch.device:
        return self.data.device

    def as_2d(self) -> "NVFP4":
        """Leading dims flattened: data [R, K/2], linear scales [R, K/16]."""
        rows, cols = self.rows, self.cols
        scale = self.scale if self.scale_layout == "swizzled" else \
            self.scale.reshape(rows, cols // BLOCK)
        return self._replace(data=self.data.reshape(rows, cols // 2), scale=scale,
                             shape=torch.Size((rows, cols)))

    def with_scale_layout(self, scale_layout: str) -> "NVFP4":
        """The same values with scales in the other layout (a copy when it changes)."""
        if scale_layout == self.scale_layout:
            return self
        flat = self.as_2d()
        if scale_layout == "swizzled":
            scale = swizzle_scales(flat.scale)
        elif scale_layout == "linear":
            scale = unswizzle_scales(self.scale, self.rows, self.cols // BLOCK)
            scale = scale.reshape(*self.shape[:-1], self.cols // BLOCK)
        else:
            raise ValueError(f"scale_layout: must be 'swizzled' or 'linear', got {scale_layout!r}")
        return self._replace(scale=scale, scale_layout=scale_layout)

    def to(self, device) -> "NVFP4":
        return self._replace(data=self.data.to(device), scale=self.scale.to(device),
                             global_scale=self.global_scale.to(device))

    def nbytes(self) -> int:
        """Bytes of data and scales (what a GEMM must read)."""
        return self.data.numel() + self.scale.numel() + 4
