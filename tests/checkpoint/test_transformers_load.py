"""docs/checkpoints.md's table "which loader reads which output", checked on a tiny Llama."""

from __future__ import annotations

import pytest
import torch

import nvfp4_kernels as nk

transformers = pytest.importorskip("transformers")
pytest.importorskip("compressed_tensors")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    root = tmp_path_factory.mktemp("llama")
    cfg = transformers.LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128,
                                   num_hidden_layers=1, num_attention_heads=2,
                                   num_key_value_heads=1)
    torch.manual_seed(0)
    transformers.LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(root / "in")
    return root, cfg


def test_compressed_tensors_output_loads_with_from_pretrained(tiny):
    root, _ = tiny
    out = root / "ct"
    nk.checkpoint.quantize_checkpoint(root / "in", out, "compressed-tensors", activations="bf16",
                                      progress=False)
    transformers.logging.set_verbosity_error()
    model = transformers.AutoModelForCausalLM.from_pretrained(out)
    with torch.no_grad():
        assert torch.isfinite(model(torch.randint(0, 128, (1, 5))).logits).all()


def test_modelopt_output_loads_with_load_model(tiny):
    root, cfg = tiny
    out = root / "mo"
    nk.checkpoint.quantize_checkpoint(root / "in", out, "modelopt", activations="bf16",
                                      progress=False)
    model = transformers.LlamaForCausalLM(cfg).to(torch.bfloat16)  # or from_config(...)
    res = nk.checkpoint.load_model(model, out)
    assert res.missing == [] and len(res.replaced) == 7
    assert isinstance(model.model.layers[0].mlp.up_proj, nk.NVFP4Linear)
    with torch.no_grad():
        assert torch.isfinite(model(torch.randint(0, 128, (1, 5))).logits).all()
