"""Loading ModelOpt and compressed-tensors NVFP4 tensors built *independently* of our writer.

ModelOpt tensors are made here with plain torch (its published layout: u8 codes, linear e4m3
scales, weight_scale_2 = 1/gs); compressed-tensors tensors with that package's own quantize+pack
function. Our loader must dequantize them to the same weights those formats define.
"""

import pytest
import torch

from nvfp4_kernels import checkpoint
from nvfp4_kernels.checkpoint.conventions import CheckpointFormatError

ct_helpers = pytest.importorskip("compressed_tensors.compressors.nvfp4.helpers")

E2M1 = torch.tensor([0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0])


def _weight(n=48, k=64, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * 0.05


def _block_scales(w, gs):
    n, k = w.shape
    amax = w.abs().reshape(n, k // 16, 16).amax(-1)
    return (gs * amax / 6).clamp(max=448).to(torch.float8_e4m3fn)


def modelopt_tensors(prefix, w, bias=None, input_amax=None):
    """ModelOpt layout from scratch: nearest E2M1 magnitude by search, low nibble first."""
    n, k = w.shape
    gs = 448 * 6 / w.abs().amax()
    s = _block_scales(w, gs)
    v = w.reshape(n, k // 16, 16) * gs / s.float().clamp(min=1e-30).unsqueeze(-1)
    mag = (v.abs().clamp(max=6).unsqueeze(-1) - E2M1).abs().argmin(-1)
    codes = (mag | ((v < 0).long() << 3)).reshape(n, k).to(torch.uint8)
    out = {f"{prefix}.weight": codes[:, 0::2] | (codes[:, 1::2] << 4),
           f"{prefix}.weight_scale": s,
           f"{prefix}.weight_scale_2": (1.0 / gs).float().reshape(())}
    if input_amax is not None:
        out[f"{prefix}.input_scale"] = torch.tensor(input_amax / (448 * 6), dtype=torch.float32)
    if bias is not None:
        out[f"{prefix}.bias"] = bias
    return out


def modelopt_dequant(t, prefix):
    packed = t[f"{prefix}.weight"]
    codes = torch.stack([packed & 0xF, packed >> 4], -1).reshape(packed.shape[0], -1).long()
    vals = E2M1[codes & 7] * torch.where(codes >= 8, -1.0, 1.0)
    n, k = vals.shape
    s = t[f"{prefix}.weight_scale"].float()
    return (vals.reshape(n, k // 16, 16) * s.unsqueeze(-1)).reshape(n, k) * t[f"{prefix}.weight_scale_2"]


def ct_tensors(prefix, w, input_amax=None):
    gs = torch.tensor([448 * 6.0]) / w.abs().amax()
    s = _block_scales(w, gs)
    out = {f"{prefix}.weight_packed": ct_helpers.quantize_and_pack_fp4(w, s.float(), global_scale=gs),
           f"{prefix}.weight_scale": s,
           f"{prefix}.weight_global_scale": gs.float()}
    if input_amax is not None:
        out[f"{prefix}.input_global_scale"] = torch.tensor([448 * 6 / input_amax])
    return out


def ct_dequant(t, prefix):
    packed = t[f"{prefix}.weight_packed"]
    n, k = packed.shape[0], packed.shape[1] * 2
    vals = ct_helpers.unpack_fp4_from_uint8(packed, n, k, torch.float32)
    per_block = t[f"{prefix}.weight_scale"].float() / t[f"{prefix}.weight_global_scale"]
    return (vals.reshape(n, k // 16, 16) * per_block.unsqueeze(-1)).reshape(n, k)


@pytest.mark.parametrize("fmt", ["modelopt", "compressed-tensors"])
@pytest.mark.parametrize("input_amax", [None, 3.5])
def test_loader_matches_independent_dequantization(fmt, input_amax):
    w = _weight()
    p = "model.layers.0.mlp.up_proj"
    if fmt == "modelopt":
        t, want = modelopt_tensors(p, w, input_amax=input_amax), None
        want = modelopt_dequant(t, p)
    else:
        t = ct_tensors(p, w, input_amax=input_amax)
        want = ct_dequant(t, p)
    lin = checkpoint.load_linear(t, p)  # format detected from the names
    # Both formats' own formulas and ours differ only in float32 rounding order (<= 2 ulp).
    torch.testing.assert_close(lin.dequantize_weight(), want, rtol=5e-7, atol=0)
    assert (want - w).norm() / w.norm() < 0.12  # and it is a real quantization of w
    if input_amax is None:
        assert lin.activations == "bf16" and lin.input_global_scale is None
    else:
        assert lin.activations == "nvfp4"
        torch.testing.assert_close(lin.input_global_scale, torch.tensor([768.0]), rtol=1e-6,
                                   atol=0)
    assert checkpoint.load_linear(t, p, format=fmt, activations="nvfp4").activations == "nvfp4"


def test_modelopt_weight_scale_2_is_kept_bit_for_bit():
    t = modelopt_tensors("m", _weight(), bias=torch.randn(48, dtype=torch.bfloat16))
    lin = checkpoint.load_linear(t, "m")
    assert torch.equal(lin.weight_alpha, t["m.weight_scale_2"].reshape(1))
    assert torch.equal(lin.bias, t["m.bias"])


@pytest.mark.parametrize("mutate, match", [
    (lambda t: t.pop("m.weight_scale"), r"m\.weight_scale: missing"),
    (lambda t: t.pop("m.weight_global_scale"), r"m\.weight_global_scale: missing"),
    (lambda t: t.__setitem__("m.weight_scale", t["m.weight_scale"][:, :2]),
     r"m\.weight_scale: expected float8_e4m3fn \[48, 4\]"),
    (lambda t: t.__setitem__("m.weight_scale", t["m.weight_scale"].float()),
     r"m\.weight_scale: expected float8_e4m3fn"),
    (lambda t: t.__setitem__("m.weight_packed", t["m.weight_packed"].to(torch.int32)),
     r"m\.weight_packed: expected uint8"),
    (lambda t: t.__setitem__("m.weight_packed", t["m.weight_packed"][:, :20]),
     r"m\.weight_packed: K = 2 \* 20 = 40 must be a multiple of 16"),
    (lambda t: t.__setitem__("m.weight_global_scale", t["m.weight_global_scale"].double()),
     r"m\.weight_global_scale: expected float32"),
    (lambda t: t.__setitem__("m.weight_global_scale", torch.ones(2)),
     r"m\.weight_global_scale: expected one value"),
    (lambda t: t.__setitem__("m.input_global_scale", torch.zeros(1)),
     r"m\.input_global_scale: must be finite and > 0, got 0\.0"),
])
def test_bad_tensors_are_named(mutate, match):
    t = ct_tensors("m", _weight())
    mutate(t)
    with pytest.raises(CheckpointFormatError, match=match):
        checkpoint.load_linear(t, "m")


def test_no_nvfp4_tensors():
    with pytest.raises(CheckpointFormatError, match="no NVFP4 tensors"):
        checkpoint.load_linear({"m.weight": torch.zeros(4, 16)}, "m")
