"""quantize-checkpoint: streaming RTN writer, output re-loads bit-exactly, safe output handling."""

import json
import weakref

import pytest
import torch
from safetensors.torch import save_file

import nvfp4_kernels as nk
from nvfp4_kernels import checkpoint
from nvfp4_kernels.checkpoint import io as ckpt_io
from nvfp4_kernels.checkpoint.io import CheckpointReader
from nvfp4_kernels.cli import main

H, I = 64, 96
LINEARS = {"model.layers.{i}.self_attn.q_proj": (H, H), "model.layers.{i}.self_attn.k_proj": (32, H),
           "model.layers.{i}.self_attn.v_proj": (32, H), "model.layers.{i}.self_attn.o_proj": (H, H),
           "model.layers.{i}.mlp.gate_proj": (I, H), "model.layers.{i}.mlp.up_proj": (I, H),
           "model.layers.{i}.mlp.down_proj": (H, I)}


def make_checkpoint(path, layers=2, shards=3):
    """A small HF-style checkpoint: sharded safetensors + index + config + a tokenizer file."""
    g = torch.Generator().manual_seed(0)
    tensors = {"model.embed_tokens.weight": torch.randn(128, H, generator=g).bfloat16(),
               "model.norm.weight": torch.ones(H, dtype=torch.bfloat16),
               "lm_head.weight": torch.randn(128, H, generator=g).bfloat16(),
               "model.odd.weight": torch.randn(8, 40, generator=g).bfloat16()}  # K % 16 != 0
    for i in range(layers):
        for name, (n, k) in LINEARS.items():
            std = 0.02 * (1 + 3 * ("k_proj" in name))  # q/k/v with different ranges
            tensors[name.format(i=i) + ".weight"] = (torch.randn(n, k, generator=g) * std).bfloat16()
        tensors[f"model.layers.{i}.self_attn.o_proj.bias"] = torch.randn(H, generator=g).bfloat16()
    names = sorted(tensors)
    path.mkdir(parents=True)
    weight_map = {}
    for s in range(shards):
        file = f"model-{s + 1:05d}-of-{shards:05d}.safetensors"
        part = {n: tensors[n] for n in names[s::shards]}
        save_file(part, str(path / file), metadata={"format": "pt"})
        weight_map.update({n: file for n in part})
    (path / "model.safetensors.index.json").write_text(json.dumps({"metadata": {},
                                                                   "weight_map": weight_map}))
    (path / "config.json").write_text(json.dumps({"model_type": "toy", "hidden_size": H}))
    (path / "tokenizer.json").write_text('{"toy": true}')
    return tensors


def test_multi_shard_round_trip_is_bit_exact(tmp_path):
    src = make_checkpoint(tmp_path / "in")
    for fmt in ("modelopt", "compressed-tensors"):
        out = tmp_path / fmt
        rep = checkpoint.quantize_checkpoint(tmp_path / "in", out, fmt, max_shard_size="20KB",
                                             progress=False)
        assert len(rep.shards) > 1 and (out / "model.safetensors.index.json").is_file()
        assert (out / "tokenizer.json").read_text() == '{"toy": true}'
        assert rep.skipped == {"model.odd": "K = 40 is not a multiple of 16"}
        assert len(rep.quantized) == 14
        reader = CheckpointReader(out)
        for module in rep.quantized:
            w = src[module + ".weight"]
            lin = checkpoint.load_linear(reader, module)
            assert checkpoint.conventions.detect(reader, module) == fmt
            gs = nk.global_scale(w)
            group = [m for m in rep.quantized if m.rpartition(".")[0] == module.rpartition(".")[0]
                     and m.endswith(("q_proj", "k_proj", "v_proj")) == module.endswith(
                         ("q_proj", "k_proj", "v_proj")) and not m.endswith(("o_proj", "down_proj"))]
            if not module.endswith(("o_proj", "down_proj")):  # fused siblings share one gs
                gs = nk.global_scale(torch.cat([src[m + ".weight"] for m in group]))
            q = nk.quantize(w, gs, scale_layout="swizzled")
            assert torch.equal(lin.weight, q.data), module
            assert torch.equal(lin.weight_scale.view(torch.uint8), q.scale.view(torch.uint8))
            assert torch.equal(lin.weight_alpha, (torch.ones(()) / q.global_scale).reshape(1))
        for name in ("model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
                     "model.odd.weight", "model.layers.1.self_attn.o_proj.bias"):
            assert torch.equal(reader[name], src[name])
        qc = json.loads((out / "config.json").read_text())["quantization_config"]
        assert {"lm_head", "model.embed_tokens", "model.odd"} <= set(qc["ignore"])
        if fmt == "modelopt":
            hq = json.loads((out / "hf_quant_config.json").read_text())["quantization"]
            assert hq["quant_algo"] == "NVFP4" and hq["group_size"] == 16
            assert {"kv_cache_quant_algo", "exclude_modules"} <= set(hq)
            assert reader["model.layers.0.mlp.up_proj.weight_scale_2"].shape == ()
        else:
            ct = pytest.importorskip("compressed_tensors.quantization")
            cfg = ct.QuantizationConfig.model_validate(qc)
            assert cfg.format == "nvfp4-pack-quantized"
            assert cfg.config_groups["group_0"].input_activations.dynamic is True
            assert reader["model.layers.0.mlp.up_proj.weight_global_scale"].shape == (1,)


def test_weight_only_and_static_input_scales(tmp_path):
    make_checkpoint(tmp_path / "in", layers=1)
    checkpoint.quantize_checkpoint(tmp_path / "in", tmp_path / "a16", "compressed-tensors",
                                   activations="bf16", progress=False)
    r = CheckpointReader(tmp_path / "a16")
    assert "model.layers.0.mlp.up_proj.input_global_scale" not in r
    assert checkpoint.load_linear(r, "model.layers.0.mlp.up_proj").activations == "bf16"
    checkpoint.quantize_checkpoint(tmp_path / "in", tmp_path / "mo", "modelopt", input_amax=12.0,
                                   progress=False)
    r = CheckpointReader(tmp_path / "mo")
    assert torch.equal(r["model.layers.0.mlp.up_proj.input_scale"],
                       torch.ones(()) / (torch.tensor(2688.0) / torch.tensor(12.0)))
    assert checkpoint.load_linear(r, "model.layers.0.mlp.up_proj").input_global_scale is not None


def test_cli_refuses_non_empty_out_dir(tmp_path, capsys):
    make_checkpoint(tmp_path / "in", layers=1)
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    rc = main(["quantize-checkpoint", str(tmp_path / "in"), str(out), "--format", "modelopt",
               "--quiet"])
    assert rc == 2 and "not empty" in capsys.readouterr().err
    assert (out / "keep.txt").read_text() == "mine"
    assert main(["quantize-checkpoint", str(tmp_path / "in"), str(out), "--format", "modelopt",
                 "--quiet", "--overwrite"]) == 0
    assert not (out / "keep.txt").exists() and (out / "hf_quant_config.json").is_file()
    assert main(["quantize-checkpoint", str(tmp_path / "in"), str(tmp_path / "in"), "--format",
                 "modelopt", "--quiet", "--overwrite"]) == 2  # never over its own input


def test_failure_leaves_nothing_that_looks_complete(tmp_path, monkeypatch):
    make_checkpoint(tmp_path / "in", layers=1)
    calls = []

    def failing(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full (simulated)")
        return nk.quantize(*args, **kwargs)

    monkeypatch.setattr(checkpoint.rtn.api, "quantize", failing)
    with pytest.raises(RuntimeError, match="simulated"):
        checkpoint.quantize_checkpoint(tmp_path / "in", tmp_path / "out", "modelopt",
                                       progress=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in"]


def test_streaming_holds_about_one_tensor(tmp_path, monkeypatch):
    """What is measured: bytes of input tensors alive at once (tracked per tensor returned by
    the reader, freed via weakref finalizers) and the writer's output buffer. Temporaries inside
    nk.quantize (a few float32 copies of the tensor being quantized) are not counted."""
    src = make_checkpoint(tmp_path / "in", layers=3, shards=2)
    live, peak = [0], [0]
    original = CheckpointReader.__getitem__

    def tracked(self, name):
        t = original(self, name)
        n = t.numel() * t.element_size()
        live[0] += n
        peak[0] = max(peak[0], live[0])
        weakref.finalize(t, lambda: live.__setitem__(0, live[0] - n))
        return t

    monkeypatch.setattr(ckpt_io.CheckpointReader, "__getitem__", tracked)
    shard = 16 * 1024
    rep = checkpoint.quantize_checkpoint(tmp_path / "in", tmp_path / "out", "compressed-tensors",
                                         max_shard_size=shard, progress=False)
    largest = max(t.numel() * t.element_size() for t in src.values())
    total = sum(t.numel() * t.element_size() for t in src.values())
    assert peak[0] <= largest < total / 10
    assert rep.peak_shard_buffer <= shard
