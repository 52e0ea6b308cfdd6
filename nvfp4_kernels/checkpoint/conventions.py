"""The two published NVFP4 checkpoint conventions (ModelOpt and compressed-tensors formats):
tensor names, scale directions, validation. (``nvfp4_kernels.formats`` is the in-memory NVFP4
container; this module is only about how checkpoints name and store it.)

Per quantized linear module ``P`` (N outputs, K inputs):

=====================  ==============================  ====================================
                       ModelOpt (``modelopt``)         compressed-tensors
                                                       (``nvfp4-pack-quantized``)
=====================  ==============================  ====================================
codes, u8 [N, K/2]     ``P.weight``                    ``P.weight_packed``
block scales, e4m3     ``P.weight_scale`` [N, K/16]    ``P.weight_scale`` [N, K/16]
weight global scale    ``P.weight_scale_2`` f32 [],    ``P.weight_global_scale`` f32 [1],
                       = 1/gs (decode direction)       = gs (encode direction)
activation gs (W4A4)   ``P.input_scale`` f32 [],       ``P.input_global_scale`` f32 [1],
                       = 1/gs                          = gs
=====================  ==============================  ====================================

Block scales are in the linear (row-major) layout in both; codes pack element 2i in the low
nibble. A missing activation scale means weight-only (ModelOpt ``W4A16_NVFP4``,
compressed-tensors ``NVFP4A16``) or, for checkpoints this library wrote, dynamic activations
(the config says which).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nvfp4_kernels import _scales
from nvfp4_kernels.layout import BLOCK

MODELOPT = "modelopt"
COMPRESSED_TENSORS = "compressed-tensors"
FORMATS = (MODELOPT, COMPRESSED_TENSORS)


@dataclass(frozen=True)
class FormatSpec:
    name: str
    codes: str            # suffix of the packed codes
    weight_gs: str        # suffix of the weight global scale
    input_gs: str         # suffix of the activation global scale
    reciprocal: bool      # True: the file stores 1/gs (decode direction)
    scalar_shape: tuple   # shape the format writes its global scales with


SPECS = {
    MODELOPT: FormatSpec(MODELOPT, "weight", "weight_scale_2", "input_scale", True, ()),
    COMPRESSED_TENSORS: FormatSpec(COMPRESSED_TENSORS, "weight_packed", "weight_global_scale",
                                   "input_global_scale", False, (1,)),
}
BLOCK_SCALE = "weight_scale"


class CheckpointFormatError(ValueError):
    """A checkpoint tensor is missing, misshaped or of the wrong dtype (the message names it)."""


def spec(format: str) -> FormatSpec:
    if format not in SPECS:
        raise ValueError(f"format: must be one of {FORMATS}, got {format!r}")
    return SPECS[format]


def detect(names, prefix: str) -> str | None:
    """The format of module `prefix` from which tensor names exist; None if not NVFP4."""
    if f"{prefix}.weight_packed" in names:
        return COMPRESSED_TENSORS
    if f"{prefix}.weight_scale_2" in names:
        return MODELOPT
    if f"{prefix}.weight" in names and f"{prefix}.{BLOCK_SCALE}" in names:
        # Block scales next to a weight: a ModelOpt module whose weight_scale_2 is missing (or
        # another quantization this library does not load). Reading it as NVFP4 names the missing
        # tensor; copying its packed codes into a dense weight would report a bogus shape error.
        return MODELOPT
    return None


@dataclass
class QuantizedLinearTensors:
    """One module's tensors in library conventions (linear scales, decode-direction alpha)."""

    weight: torch.Tensor                    # u8 [N, K/2]
    weight_scale: torch.Tensor              # e4m3 [N, K/16], linear layout
    weight_global_scale: torch.Tensor | None  # f32 [1], encode direction (compressed-tensors)
    weight_alpha: torch.Tensor | None       # f32 [1], = 1/gs (ModelOpt weight_scale_2)
    input_global_scale: torch.Tensor | None   # f32 [1], encode direction, None = absent
    bias: torch.Tensor | None


def _get(tensors, name: str, what: str) -> torch.Tensor:
    if name not in tensors:
        raise CheckpointFormatError(f"{name}: missing; expected {what}")
    return tensors[name]


def _scalar(tensors, name: str, required: bool, what: str = "a float32 scalar"
            ) -> torch.Tensor | None:
    if name not in tensors:
        if required:
            raise CheckpointFormatError(f"{name}: missing; expected {what}")
        return None
    t = tensors[name]
    if t.dtype != torch.float32:
        raise CheckpointFormatError(f"{name}: expected float32, got {t.dtype} "
                                    f"(shape {tuple(t.shape)})")
    if t.numel() != 1:
        raise CheckpointFormatError(f"{name}: expected one value (shape [] or [1]), got shape "
                                    f"{tuple(t.shape)}")
    try:
        _scales.check_scale_tensor(name, t, numel=(1,))
    except _scales.ScaleError as exc:
        raise CheckpointFormatError(str(exc)) from None
    return t.reshape(1)


def read_linear(tensors, prefix: str, format: str) -> QuantizedLinearTensors:
    """Validate and collect module `prefix`'s tensors; `tensors` maps names to tensors."""
    sp = spec(format)
    codes_name = f"{prefix}.{sp.codes}"
    codes = _get(tensors, codes_name, "uint8 [N, K/2] packed E2M1 codes")
    if codes.dtype != torch.uint8 or codes.dim() != 2:
        raise CheckpointFormatError(f"{codes_name}: expected uint8 [N, K/2], got shape "
                                    f"{tuple(codes.shape)}, dtype {codes.dtype}")
    n, k = codes.shape[0], codes.shape[1] * 2
    if k % BLOCK:
        raise CheckpointFormatError(f"{codes_name}: K = 2 * {codes.shape[1]} = {k} must be a "
                                    f"multiple of {BLOCK}")
    scale_name = f"{prefix}.{BLOCK_SCALE}"
    scale = _get(tensors, scale_name, f"float8_e4m3fn [{n}, {k // BLOCK}] block scales")
    if scale.dtype != torch.float8_e4m3fn or tuple(scale.shape) != (n, k // BLOCK):
        raise CheckpointFormatError(f"{scale_name}: expected float8_e4m3fn [{n}, {k // BLOCK}] "
                                    f"(linear layout, one per 16 of K={k}), got shape "
                                    f"{tuple(scale.shape)}, dtype {scale.dtype}")
    wgs = _scalar(tensors, f"{prefix}.{sp.weight_gs}", required=True,
                  what=(f"the float32 weight global scale ({sp.weight_gs} = "
                        f"{'1/gs' if sp.reciprocal else 'gs'}) that goes with {scale_name}; a "
                        f"{format} NVFP4 module needs it"))
    igs = _scalar(tensors, f"{prefix}.{sp.input_gs}", required=False)
    if igs is not None and sp.reciprocal:
        igs = torch.ones((), dtype=torch.float32) / igs
    bias = tensors[f"{prefix}.bias"] if f"{prefix}.bias" in tensors else None
    if bias is not None and (bias.dim() != 1 or bias.shape[0] != n
                             or not bias.dtype.is_floating_point):
        raise CheckpointFormatError(f"{prefix}.bias: expected a float [{n}] vector, got shape "
                                    f"{tuple(bias.shape)}, dtype {bias.dtype}")
    return QuantizedLinearTensors(codes, scale, None if sp.reciprocal else wgs,
                                  wgs if sp.reciprocal else None, igs, bias)


def write_linear(prefix: str, format: str, data: torch.Tensor, scale: torch.Tensor,
                 global_scale: torch.Tensor, input_global_scale: torch.Tensor | None = None
                 ) -> dict[str, torch.Tensor]:
    """Module `prefix`'s output tensors from RTN results (linear scales, encode-direction gs)."""
    sp = spec(format)

    def scalar(gs):
        gs = gs.detach().float().reshape(())
        if sp.reciprocal:  # the same single division NVFP4Linear uses for weight_alpha
            gs = torch.ones((), dtype=torch.float32, device=gs.device) / gs
        return gs.reshape(sp.scalar_shape).cpu().clone()  # fused siblings share gs objects

    def checked(name, t):
        # The writer refuses what read_linear would refuse (same check, same message).
        try:
            _scales.check_scale_tensor(name, t, numel=(1,))
        except _scales.ScaleError as exc:
            raise CheckpointFormatError(str(exc)) from None
        return t

    out = {f"{prefix}.{sp.codes}": data.cpu().contiguous(),
           f"{prefix}.{BLOCK_SCALE}": scale.cpu().contiguous(),
           f"{prefix}.{sp.weight_gs}": checked(f"{prefix}.{sp.weight_gs}",
                                                scalar(global_scale))}
    if input_global_scale is not None:
        name = f"{prefix}.{sp.input_gs}"
        out[name] = checked(name, scalar(torch.as_tensor(input_global_scale)))
    return out
