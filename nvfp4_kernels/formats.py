"""``NVFP4``: a quantized matrix as the kernels and checkpoints see it.

A NamedTuple rather than a tensor subclass: it is what the ops take apart anyway, it costs nothing
per call, and ``torch.compile(fullgraph=True)`` traces through it (a subclass would need
``__torch_dispatch__`` machinery for no gain here).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch

from nvfp4_kernels.reference import BLOCK, swizzle_scales, unswizzle_scales


class NVFP4(NamedTuple):
    """A tensor of logical ``shape`` (..., K) quantized along its last dim.

    data          uint8 (..., K/2), two E2M1 codes per byte (element 2i in the low nibble)
    scale         float8_e4m3fn block scales: ``linear`` (..., K/16), or ``swizzled`` (the 128x4
                  CUTLASS layout over the flattened rows: [ceil128(R), ceil4(K/16)])
    global_scale  0-dim float32, encode direction (448*6/amax); dequantize divides by it
    scale_layout  "swizzled" or "linear"
    shape         logical shape of the unquantized tensor
    """

    data: torch.Tensor
    scale: torch.Tensor
    global_scale: torch.Tensor
    scale_layout: str
    shape: torch.Size

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
