"""A tiny random Gemma-4 text model: module replacement and quantize-checkpoint -> load -> forward.

Exercises Gemma-4 specifics: 256/512 head dims (sliding/full layers), k_eq_v attention (full
layers have no v_proj, so the q/k/v group has two members), per-layer input projections, tied
embeddings (lm_head absent from the checkpoint).
"""

import copy

import pytest
import torch

import nvfp4_kernels as nk
from nvfp4_kernels.nn import NVFP4Linear

transformers = pytest.importorskip("transformers")
Gemma4TextConfig = getattr(transformers, "Gemma4TextConfig", None)
if Gemma4TextConfig is None:
    pytest.skip("this transformers has no gemma4", allow_module_level=True)


def tiny_gemma4():
    torch.manual_seed(0)
    cfg = Gemma4TextConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, head_dim=256, global_head_dim=512,
        num_global_key_value_heads=1, attention_k_eq_v=True, hidden_size_per_layer_input=16,
        vocab_size_per_layer_input=256, layer_types=["sliding_attention", "full_attention"],
        sliding_window=16)
    return cfg, transformers.Gemma4ForCausalLM(cfg).eval().to(torch.bfloat16)


@pytest.mark.parametrize("fmt", ["modelopt", "compressed-tensors"])
def test_quantize_checkpoint_load_forward_bit_exact(tmp_path, fmt):
    cfg, model = tiny_gemma4()
    assert not hasattr(model.model.layers[1].self_attn, "v_proj") or \
        model.model.layers[1].self_attn.v_proj is None  # k_eq_v on the full-attention layer
    model.save_pretrained(tmp_path / "in", max_shard_size="200KB")
    out = tmp_path / "out"
    assert nk.checkpoint.quantize_checkpoint(tmp_path / "in", out, fmt,
                                             progress=False).quantized

    loaded = transformers.Gemma4ForCausalLM(cfg).eval().to(torch.bfloat16)
    res = nk.checkpoint.load_model(loaded, out)
    assert res.missing == [] and res.unexpected == []
    assert isinstance(loaded.model.layers[1].self_attn.q_proj, NVFP4Linear)
    assert loaded.model.layers[1].self_attn.q_proj.out_features == 1024  # 2 heads x 512
    assert type(loaded.lm_head) is torch.nn.Linear  # tied to the embedding, kept dense

    in_memory = copy.deepcopy(model)
    names = nk.quantize_model(in_memory)
    assert sorted(names) == sorted(res.replaced)
    ids = torch.randint(0, 256, (2, 12))
    with torch.no_grad():
        a, b, ref = loaded(ids).logits, in_memory(ids).logits, model(ids).logits
    assert torch.equal(a, b)  # the checkpoint round trip changes nothing
    assert torch.isfinite(a).all() and not torch.equal(a, ref)
    # state_dict of the loaded model reloads bit-exactly
    again = transformers.Gemma4ForCausalLM(cfg).eval().to(torch.bfloat16)
    nk.quantize_model(again)
    again.load_state_dict(loaded.state_dict())
    with torch.no_grad():
        assert torch.equal(again(ids).logits, a)
