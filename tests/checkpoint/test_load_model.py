"""load_model is all or nothing, and names what is wrong in the checkpoint."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import nvfp4_kernels as nk
from nvfp4_kernels import checkpoint
from nvfp4_kernels.checkpoint.conventions import CheckpointFormatError


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = nn.ModuleList([nn.Linear(64, 32), nn.Linear(32, 64)])
        self.norm = nn.LayerNorm(64)


def write(path, fmt="modelopt", drop=(), replace=None):
    torch.manual_seed(0)
    src = Toy()
    tensors = {}
    for i, lin in enumerate(src.layers):
        q = nk.quantize(lin.weight.detach(), scale_layout="linear")
        tensors.update(checkpoint.conventions.write_linear(f"layers.{i}", fmt, q.data, q.scale,
                                                       q.global_scale))
        tensors[f"layers.{i}.bias"] = lin.bias.detach().clone()
    tensors["norm.weight"] = src.norm.weight.detach().clone()
    tensors["norm.bias"] = src.norm.bias.detach().clone()
    for k in drop:
        tensors.pop(k)
    tensors.update(replace or {})
    path.mkdir()
    save_file(tensors, str(path / "model.safetensors"))
    return path


def snapshot(model):
    return {k: v.clone() for k, v in model.state_dict().items()}, \
        [type(m).__name__ for m in model.modules()]


def assert_unchanged(model, before):
    state, types = snapshot(model)
    assert types == before[1]
    assert state.keys() == before[0].keys()
    assert all(torch.equal(state[k], before[0][k]) for k in state)


def test_load_model_round_trip(tmp_path):
    model = Toy()
    res = checkpoint.load_model(model, write(tmp_path / "ck"))
    assert res.replaced == ["layers.0", "layers.1"] and isinstance(model.layers[1], nk.NVFP4Linear)
    assert sorted(res.loaded) == ["norm.bias", "norm.weight"] and not res.missing


@pytest.mark.parametrize("drop, replace, match", [
    (["norm.bias"], None, r"1 model tensor\(s\) not in .*norm\.bias.*left unchanged"),
    (["layers.1.weight_scale_2"], None,
     r"layers\.1\.weight_scale_2: missing; expected the float32 weight global scale "
     r"\(weight_scale_2 = 1/gs\) that goes with layers\.1\.weight_scale"),
    (None, {"layers.1.weight_scale_2": torch.tensor(-1.0)},
     r"layers\.1\.weight_scale_2: must be finite and > 0, got -1\.0"),
    (None, {"layers.1.weight_scale": torch.zeros(64, 1, dtype=torch.float8_e4m3fn)},
     r"layers\.1\.weight_scale: expected float8_e4m3fn \[64, 2\]"),
    (None, {"norm.weight": torch.ones(63)}, r"norm\.weight: checkpoint shape \(63,\) != model"),
])
def test_failed_load_leaves_the_model_untouched(tmp_path, drop, replace, match):
    ck = write(tmp_path / "ck", drop=drop or (), replace=replace)
    model = Toy()
    before = snapshot(model)
    with pytest.raises(CheckpointFormatError, match=match):
        checkpoint.load_model(model, ck)
    assert_unchanged(model, before)  # layer 0 is still nn.Linear, no tensor was copied


def test_layer_size_mismatch_is_named_before_loading(tmp_path):
    ck = write(tmp_path / "ck")
    model = Toy()
    model.layers[1] = nn.Linear(32, 48)
    before = snapshot(model)
    with pytest.raises(CheckpointFormatError, match=r"layers\.1: checkpoint holds a \[64, 32\] "
                                                    r"weight but the model's layer is \[48, 32\]"):
        checkpoint.load_model(model, ck)
    assert_unchanged(model, before)
