"""Gemma-4-31B decode step (random weights, real shapes) in three recipes, and the decode
attention kernel alone against gather-to-bf16 + SDPA.

    python benchmarks/bench_decode_step.py --out DIR                 # decode step + attention
    python benchmarks/bench_decode_step.py --kernel-only [--sweep] --out DIR
    python benchmarks/bench_decode_step.py --smoke --out DIR         # tiny, CPU ok

Step mode: a stack of decoder layers (default 6 = 5 sliding + 1 full, the model's pattern),
RMSNorm, RoPE and the gated-GELU MLP in PyTorch, q/k/v and gate/up fused, run as one CUDA graph
per step for batch 1/8/32 at context 4K/32K, in three recipes:

* ``bf16``   bf16 weights, bf16 cache (contiguous per layer, as a static cache) + SDPA;
* ``mixed``  NVFP4 W4A16 MLP, bf16 attention projections, FP8 paged cache + nk.attention.decode;
* ``nvfp4``  every linear NVFP4 (W4A16; ``--nvfp4-activations nvfp4`` for W4A4), FP8 cache +
  nk.attention.decode.

NVFP4 layers come from ``nk.checkpoint.quantize_model`` (the selection and RTN quantization the
checkpoint writer uses) as ``NVFP4Linear``; ``--via-checkpoint DIR`` instead saves the bf16 layers,
runs ``quantize_checkpoint`` and ``load_model`` (the full loader path), fused with
``NVFP4Linear.cat``. Reported per (recipe, batch, context): ms per step, the projection to 60
layers (x 60 / layers) and tokens/s from it (embedding, LM head and sampling excluded), weight
and cache memory for 60 layers, and per layer kind the attention op alone: ms, fraction of the
copy bandwidth on the cache bytes it reads, and gather-to-bf16 + SDPA on the same FP8 cache.

Full layers have no v_proj: V is v_norm(k_proj(x)) without RoPE (Hugging Face's Gemma-4), so by
default they store a value cache too (``--full-kv separate``); ``--full-kv shared`` stores one
cache and reads V from it (value_cache=None), the K-equals-V mode.
"""

from __future__ import annotations

import gc
import tempfile
from pathlib import Path
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from nvfp4_kernels import benchmarking as harness


class LayerKind(NamedTuple):
    kv_heads: int
    head_dim: int
    window: int          # 0: full attention
    rope_theta: float
    has_v_proj: bool


class ModelShape(NamedTuple):
    hidden: int
    intermediate: int
    q_heads: int
    sliding: LayerKind
    full: LayerKind
    total_layers: int = 60
    period: int = 6      # 5 sliding layers, then 1 full


# Gemma-4-31B (issue 12): 60 layers, hidden 5376, MLP 21504, 32 query heads; sliding layers 16
# KV heads x 256 with a 1024 window; full layers 4 KV heads x 512 and no v_proj.
GEMMA4_31B = ModelShape(5376, 21504, 32, LayerKind(16, 256, 1024, 1e4, True),
                        LayerKind(4, 512, 0, 1e6, False))
TINY = ModelShape(64, 128, 4, LayerKind(2, 32, 16, 1e4, True), LayerKind(1, 64, 0, 1e6, False),
                  total_layers=6)
RECIPES = ("bf16", "mixed", "nvfp4")
EPS = 1e-6


# ---------------------------------------------------------------------------------------------
# Model: parameters with Hugging Face names (so quantize_model / checkpoints select them)
# ---------------------------------------------------------------------------------------------

def _linear(n_in, n_out, device, dtype):
    lin = nn.Linear(n_in, n_out, bias=False, device=device, dtype=dtype)
    with torch.no_grad():
        lin.weight.normal_(0.0, n_in ** -0.5)
    return lin


class Layer(nn.Module):
    def __init__(self, shape: ModelShape, kind: LayerKind, device, dtype):
        super().__init__()
        self.kind = kind
        h, d = shape.hidden, kind.head_dim
        attn = nn.Module()
        attn.q_proj = _linear(h, shape.q_heads * d, device, dtype)
        attn.k_proj = _linear(h, kind.kv_heads * d, device, dtype)
        if kind.has_v_proj:
            attn.v_proj = _linear(h, kind.kv_heads * d, device, dtype)
        attn.o_proj = _linear(shape.q_heads * d, h, device, dtype)
        attn.q_norm = nn.Parameter(torch.rand(d, device=device, dtype=dtype))
        attn.k_norm = nn.Parameter(torch.rand(d, device=device, dtype=dtype))
        self.self_attn = attn
        mlp = nn.Module()
        mlp.gate_proj = _linear(h, shape.intermediate, device, dtype)
        mlp.up_proj = _linear(h, shape.intermediate, device, dtype)
        mlp.down_proj = _linear(shape.intermediate, h, device, dtype)
        self.mlp = mlp
        for name in ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
                     "post_feedforward_layernorm"):
            setattr(self, name, nn.Parameter(torch.rand(h, device=device, dtype=dtype)))

    def fuse(self):
        """q/k/v -> qkv and gate/up -> gate_up, as serving engines run them (one GEMM each)."""
        from nvfp4_kernels import NVFP4Linear
        a, m = self.self_attn, self.mlp

        def cat(mods):
            if isinstance(mods[0], NVFP4Linear):
                return NVFP4Linear.cat(mods)
            w = torch.cat([mod.weight for mod in mods])
            out = nn.Linear(w.shape[1], w.shape[0], bias=False, device=w.device, dtype=w.dtype)
            with torch.no_grad():
                out.weight.copy_(w)
            return out
        parts = [a.q_proj, a.k_proj] + ([a.v_proj] if self.kind.has_v_proj else [])
        self.qkv = cat(parts)
        self.gate_up = cat([m.gate_proj, m.up_proj])
        self.o_proj, self.down_proj = a.o_proj, m.down_proj
        del a.q_proj, a.k_proj, m.gate_proj, m.up_proj
        if self.kind.has_v_proj:
            del a.v_proj


def build_layers(shape: ModelShape, layers: int, device, dtype=torch.bfloat16) -> nn.Module:
    model = nn.Module()
    kinds = [shape.full if (i + 1) % shape.period == 0 else shape.sliding for i in range(layers)]
    model.layers = nn.ModuleList([Layer(shape, k, device, dtype) for k in kinds])
    return model


NVFP4_SELECTION = {"mixed": r"\.mlp\.", "nvfp4": None}  # include regex per recipe


def quantize(model: nn.Module, recipe: str, activations: str, via_checkpoint: str | None,
             shape: ModelShape, device) -> nn.Module:
    """NVFP4Linear layers for the recipe, through the library's own paths (no side path)."""
    import nvfp4_kernels as nk
    if recipe == "bf16":
        return model
    include = NVFP4_SELECTION[recipe]
    if via_checkpoint is None:
        nk.checkpoint.quantize_model(model, include=include, activations=activations)
        return model
    from safetensors.torch import save_file
    root = Path(via_checkpoint)
    src, dst = root / f"{recipe}-bf16", root / f"{recipe}-nvfp4"
    src.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
              str(src / "model.safetensors"))
    nk.checkpoint.quantize_checkpoint(src, dst, "modelopt", include=include,
                                      activations=activations, overwrite=True, progress=False)
    fresh = build_layers(shape, len(model.layers), device)
    result = nk.checkpoint.load_model(fresh, dst, activations=activations)
    assert result.replaced, "the checkpoint held no NVFP4 layer"
    return fresh


def module_bytes(mod: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in list(mod.parameters()) + list(mod.buffers()))


# ---------------------------------------------------------------------------------------------
# Per-layer math in PyTorch
# ---------------------------------------------------------------------------------------------

def rms_norm(x, scale=None):
    """Gemma's RMSNorm in float32; ``scale`` is ``1 + weight`` in float32, made once by
    ``norm_scales`` (not per step). F.rms_norm is one fused kernel on CUDA where torch has it:
    the glue around the GEMMs is the same in every recipe, and a serving engine fuses it too."""
    return F.rms_norm(x.float(), (x.shape[-1],), scale, EPS).to(x.dtype)


def norm_scales(layer) -> dict:
    """The float32 ``1 + weight`` of each of a layer's RMSNorms, by name."""
    names = ("input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm",
             "post_feedforward_layernorm")
    scales = {name: 1.0 + getattr(layer, name).detach().float() for name in names}
    scales["q_norm"] = 1.0 + layer.self_attn.q_norm.detach().float()
    scales["k_norm"] = 1.0 + layer.self_attn.k_norm.detach().float()
    return scales


def rope_tables(kind: LayerKind, position: int, device, dtype):
    inv = 1.0 / (kind.rope_theta ** (torch.arange(0, kind.head_dim, 2, device=device).float()
                                     / kind.head_dim))
    ang = torch.cat([inv, inv]) * position
    return ang.cos().to(dtype), ang.sin().to(dtype)


def rope(x, cos, sin):
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], -1)
    return x * cos + rotated * sin


# ---------------------------------------------------------------------------------------------
# Attention + cache per recipe. Every sequence of the batch is at the same context (one step).
# ---------------------------------------------------------------------------------------------

def _keys_read(kind: LayerKind, seq_len: int) -> int:
    return min(seq_len, kind.window) if kind.window else seq_len


class BF16Attention:
    """Contiguous bf16 cache [B, kv_heads, keys, D] per layer (window-sized for sliding layers,
    as a static cache keeps it) and SDPA with the GQA group as the query length."""

    def __init__(self, kind, q_heads, batch, context, device, gen):
        self.kind, self.q_heads = kind, q_heads
        self.keys = _keys_read(kind, context + 1)
        shape = (batch, kind.kv_heads, self.keys, kind.head_dim)
        self.k = torch.empty(shape, device=device, dtype=torch.bfloat16).normal_(generator=gen)
        self.v = torch.empty(shape, device=device, dtype=torch.bfloat16).normal_(generator=gen)
        self.slot = self.keys - 1  # the new token's row (a ring buffer, seen at one step)

    def cache_bytes(self) -> int:
        return 2 * self.k.numel() * self.k.element_size()

    def attend(self):
        b, hkv, _, d = self.k.shape
        q = self._q.view(b, hkv, self.q_heads // hkv, d)
        return F.scaled_dot_product_attention(q, self.k, self.v, scale=1.0)

    def __call__(self, q, k, v):
        self.k[:, :, self.slot] = k
        self.v[:, :, self.slot] = v
        self._q = q
        return self.attend().reshape(q.shape[0], -1)


class FP8Attention:
    """Paged FP8 cache (block_size rows per block, blocks scattered at random) written by
    nk.kv_cache.write and read by nk.attention.decode. Sliding layers own blocks for the window
    only; table entries before it are -1 (never read)."""

    def __init__(self, kind, q_heads, batch, context, device, gen, *, block_size, shared_kv,
                 backend=None):
        import nvfp4_kernels as nk
        self.nk, self.kind, self.backend = nk, kind, backend
        self.seq_len = context + 1
        cols = -(-self.seq_len // block_size)
        first = (max(self.seq_len - kind.window, 0) // block_size) if kind.window else 0
        live = cols - first
        num_blocks = batch * live
        shape = (num_blocks, block_size, kind.kv_heads, kind.head_dim)
        # Random e4m3 codes without NaN (0x7F/0xFF): magnitudes below 0x70, random signs.
        codes = torch.randint(0, 0x70, shape, dtype=torch.uint8, device=device, generator=gen)
        codes |= torch.randint(0, 2, shape, dtype=torch.uint8, device=device, generator=gen) << 7
        self.kc = codes.view(torch.float8_e4m3fn)
        self.vc = None if shared_kv else codes.flip(0).contiguous().view(torch.float8_e4m3fn)
        perm = torch.randperm(num_blocks, device=device, generator=gen).reshape(batch, live)
        table = torch.full((batch, cols), -1, dtype=torch.int32, device=device)
        table[:, first:] = perm.int()
        self.table = table
        self.lens = torch.full((batch,), self.seq_len, dtype=torch.int32, device=device)
        pos = self.seq_len - 1
        self.slots = (table[:, pos // block_size].long() * block_size + pos % block_size)
        # The gather baseline's view: the table from the window's first block on.
        self.first = first
        self.window_table = table[:, first:].contiguous()
        self.window_lens = self.lens - first * block_size
        self.k_scale = torch.full((1,), 0.05, device=device)
        self.v_scale = torch.full((1,), 0.05, device=device)
        self.block_size = block_size

    def cache_bytes(self) -> int:
        return self.kc.numel() * (1 if self.vc is None else 2)

    def bytes_read(self, batch) -> int:
        k = self.kind
        return batch * _keys_read(k, self.seq_len) * k.kv_heads * k.head_dim * \
            (1 if self.vc is None else 2)

    def attend(self, q):
        return self.nk.attention.decode(
            q, self.kc, self.vc, self.table, self.lens, self.k_scale,
            None if self.vc is None else self.v_scale, sm_scale=1.0,
            window=self.kind.window or None, max_seq_len=self.seq_len, backend=self.backend)

    def gather_sdpa(self, q):
        """The baseline this replaces: gather the attended keys to bf16, then SDPA. Sliding
        layers gather from the first block of the window (up to block_size - 1 extra keys)."""
        b = q.shape[0]
        n = self.seq_len - self.first * self.block_size
        vc = self.kc if self.vc is None else self.vc
        k, v = self.nk.kv_cache.gather(self.kc, vc, self.window_table, self.window_lens,
                                       self.k_scale, self.v_scale, dtype=q.dtype,
                                       total_tokens=b * n, backend=self.backend)
        hkv, d = self.kind.kv_heads, self.kind.head_dim
        k = k.view(b, n, hkv, d).transpose(1, 2)
        v = v.view(b, n, hkv, d).transpose(1, 2)
        qg = q.view(b, hkv, q.shape[1] // hkv, d)
        return F.scaled_dot_product_attention(qg, k, v, scale=1.0)

    def __call__(self, q, k, v):
        if self.vc is None:  # one cache: V is read from it, so only K is stored
            self.nk.kv_cache.write(k, k, self.kc, self.kc, self.slots, self.k_scale,
                                   self.k_scale, backend=self.backend)
        else:
            self.nk.kv_cache.write(k, v, self.kc, self.vc, self.slots, self.k_scale,
                                   self.v_scale, backend=self.backend)
        return self.attend(q).reshape(q.shape[0], -1)


def decoder_step(layers, attns, ropes, q_heads):
    scales = [norm_scales(layer) for layer in layers]

    def step(x):
        for layer, attn, (cos, sin), ns in zip(layers, attns, ropes, scales):
            kind = layer.kind
            b, d = x.shape[0], kind.head_dim
            h = rms_norm(x, ns["input_layernorm"])
            qkv = layer.qkv(h)
            q = qkv[:, :q_heads * d].view(b, q_heads, d)
            k_raw = qkv[:, q_heads * d:(q_heads + kind.kv_heads) * d].view(b, kind.kv_heads, d)
            v_raw = qkv[:, (q_heads + kind.kv_heads) * d:].view(b, kind.kv_heads, d) \
                if kind.has_v_proj else k_raw
            q = rope(rms_norm(q, ns["q_norm"]), cos, sin)
            k = rope(rms_norm(k_raw, ns["k_norm"]), cos, sin)
            v = rms_norm(v_raw)
            o = attn(q.contiguous(), k.contiguous(), v.contiguous())
            x = x + rms_norm(layer.o_proj(o), ns["post_attention_layernorm"])
            h = rms_norm(x, ns["pre_feedforward_layernorm"])
            gate, up = layer.gate_up(h).chunk(2, -1)
            x = x + rms_norm(layer.down_proj(F.gelu(gate, approximate="tanh") * up),
                             ns["post_feedforward_layernorm"])
        return x
    return step


# ---------------------------------------------------------------------------------------------
# Runs
# ---------------------------------------------------------------------------------------------

def _timer(args, device):
    graph = device.type == "cuda"
    return lambda fn, inputs: harness.measure(fn, inputs, args, graph)


def run_step(args, device, shape):
    timed = _timer(args, device)
    copy_bw = harness.copy_bandwidth(1 << 30 if device.type == "cuda" else 1 << 20, device, args)
    gen = torch.Generator(device=device).manual_seed(0)
    rows = []
    for recipe in args.recipes:
        model = build_layers(shape, args.layers, device)
        model = quantize(model, recipe, args.nvfp4_activations, args.via_checkpoint, shape,
                         device)
        for layer in model.layers:
            layer.fuse()
        layers = list(model.layers)
        per_layer_weights = [module_bytes(layer) for layer in layers]
        for batch in args.batches:
            for context in args.contexts:
                attns = []
                for layer in layers:
                    if recipe == "bf16":
                        attns.append(BF16Attention(layer.kind, shape.q_heads, batch, context,
                                                   device, gen))
                    else:
                        attns.append(FP8Attention(
                            layer.kind, shape.q_heads, batch, context, device, gen,
                            block_size=args.block_size,
                            shared_kv=args.full_kv == "shared" and not layer.kind.has_v_proj,
                            backend=args.attention_backend))
                ropes = [rope_tables(layer.kind, context, device, torch.bfloat16)
                         for layer in layers]
                step = decoder_step(layers, attns, ropes, shape.q_heads)
                x = torch.randn(batch, shape.hidden, device=device, generator=gen).bfloat16()
                with torch.no_grad():
                    ms = timed(step, [(x,)])
                scale = shape.total_layers / len(layers)
                projected = ms * scale
                row = dict(kind="step", recipe=recipe, batch=batch, context=context,
                           layers=len(layers), step_ms=ms, projected_layers=shape.total_layers,
                           projected_ms=projected, tokens_per_s=batch * 1e3 / projected,
                           weight_GB_projected=sum(per_layer_weights) * scale / 1e9,
                           cache_GB_projected=sum(a.cache_bytes() for a in attns) * scale / 1e9,
                           timing="cuda_graph" if device.type == "cuda" else "wall_clock_cpu")
                rows.append(row)
                print(row, flush=True)
                rows += attention_rows(args, recipe, layers, attns, batch, context, shape,
                                       device, gen, copy_bw, timed)
                del attns, step
                gc.collect()
                if device.type == "cuda":
                    torch.cuda.empty_cache()
        del model, layers
        gc.collect()
        if device.type == "cuda":
            torch.cuda.empty_cache()
    for row in rows:  # speedup of each step over bf16 at the same batch and context
        if row["kind"] == "step":
            base = [r for r in rows if r["kind"] == "step" and r["recipe"] == "bf16"
                    and r["batch"] == row["batch"] and r["context"] == row["context"]]
            row["speedup_vs_bf16"] = base[0]["step_ms"] / row["step_ms"] if base else None
    return rows


def attention_rows(args, recipe, layers, attns, batch, context, shape, device, gen, copy_bw,
                   timed):
    """The attention op alone, once per layer kind present in the stack."""
    rows, seen = [], set()
    for layer, attn in zip(layers, attns):
        kind = layer.kind
        name = "full" if kind.window == 0 else "sliding"
        if name in seen:
            continue
        seen.add(name)
        q = torch.randn(batch, shape.q_heads, kind.head_dim, device=device,
                        generator=gen).bfloat16()
        fields = dict(kind="attention", recipe=recipe, layer_kind=name, batch=batch,
                      context=context, kv_heads=kind.kv_heads, head_dim=kind.head_dim,
                      window=kind.window)
        if recipe == "bf16":
            attn._q = q
            ms = timed(lambda: attn.attend(), [()])
            nbytes = attn.cache_bytes()
            rows.append(dict(fields, op="bf16_cache_sdpa", ms=ms, bytes=nbytes,
                             fraction_of_copy=nbytes / (ms * 1e-3) / copy_bw))
        else:
            nbytes = attn.bytes_read(batch)
            ms = timed(lambda: attn.attend(q), [()])
            base = timed(lambda: attn.gather_sdpa(q), [()])
            rows.append(dict(fields, op="fp8_decode", ms=ms, bytes=nbytes,
                             fraction_of_copy=nbytes / (ms * 1e-3) / copy_bw,
                             gather_sdpa_ms=base, speedup_vs_gather_sdpa=base / ms))
        print(rows[-1], flush=True)
    return rows


def default_config(head_dim: int) -> str | None:
    """The Triton launcher's config for a head dim (what the "default" rows ran on a GPU)."""
    try:
        from nvfp4_kernels.backends.triton import attention as ta
    except ImportError:  # no Triton: the rows came from another backend
        return None
    return config_name(ta.config_for(head_dim))


def run_kernel_only(args, device):
    """nk.attention.decode alone: batch 8-32, context 4K-32K, 32 q / 16 kv heads x 256, no
    window (every key read), vs gather-to-bf16 + SDPA on the same cache; plus the two Gemma
    layer kinds. --sweep also times every Triton config candidate."""
    timed = _timer(args, device)
    copy_bw = harness.copy_bandwidth(1 << 30 if device.type == "cuda" else 1 << 20, device, args)
    gen = torch.Generator(device=device).manual_seed(0)
    if args.smoke:
        shapes = [("gqa2_d256", LayerKind(2, 32, 0, 1e4, True), 4)]
        grid = [(2, 40)]
    else:
        shapes = [("gqa2_d256", LayerKind(16, 256, 0, 1e4, True), 32),
                  ("sliding_w1024_d256", GEMMA4_31B.sliding, 32),
                  ("full_d512", GEMMA4_31B.full, 32)]
        # --sweep: two contexts (4K, 32K) unless given, to keep the sweep near 100 s on an H100,
        # and batch 1 too (the split count matters most there).
        contexts = args.kernel_contexts or ([4096, 32768] if args.sweep
                                            else [4096, 8192, 16384, 32768])
        batches = args.kernel_batches or ([1, 8, 16, 32] if args.sweep else [8, 16, 32])
        grid = [(b, c) for b in batches for c in contexts]
    rows = []
    for name, kind, q_heads in shapes:
        for batch, context in grid:
            attn = FP8Attention(kind, q_heads, batch, context, device, gen,
                                block_size=args.block_size, shared_kv=False,
                                backend=args.attention_backend)
            q = torch.randn(batch, q_heads, kind.head_dim, device=device,
                            generator=gen).bfloat16()
            nbytes = attn.bytes_read(batch)
            ms = timed(lambda: attn.attend(q), [()])
            base = timed(lambda: attn.gather_sdpa(q), [()])
            fields = dict(kind="kernel", shape=name, batch=batch, context=context,
                          q_heads=q_heads, kv_heads=kind.kv_heads, head_dim=kind.head_dim,
                          window=kind.window, block_size=args.block_size)
            rows.append(dict(fields, op="fp8_decode", config="default",
                             default_config=default_config(kind.head_dim), ms=ms, bytes=nbytes,
                             bandwidth_GBps=nbytes / (ms * 1e-3) / 1e9,
                             fraction_of_copy=nbytes / (ms * 1e-3) / copy_bw,
                             gather_sdpa_ms=base, speedup_vs_gather_sdpa=base / ms))
            print(rows[-1], flush=True)
            if args.sweep and device.type == "cuda":
                rows += sweep(attn, q, fields, nbytes, copy_bw, timed)
            del attn
            if device.type == "cuda":
                torch.cuda.empty_cache()
    return rows


def config_name(cfg) -> str:
    """(64, 4, 1, True, True) -> "64x4x1xprefetch", (64, 4, 1, False, False) -> "64x4x1xbytes",
    (64, 4, 1) -> "64x4x1" (word loads, no table prefetch): one CSV field, no commas."""
    words, prefetch = (tuple(cfg[3:]) + (True, False)[len(cfg[3:]):])[:2]
    return "x".join(str(int(v)) for v in cfg[:3]) + ("" if words else "xbytes") + \
        ("xprefetch" if prefetch else "")


def sweep(attn, q, fields, nbytes, copy_bw, timed):
    from nvfp4_kernels.backends.triton import attention as ta
    rows = []
    q4 = q.unsqueeze(1)
    vc = attn.vc
    default = ta.config_for(attn.kind.head_dim)
    auto = ta.auto_splits(q4, attn.kc, attn.table, attn.kind.window, attn.seq_len, default[0])
    # Every candidate at the launcher's split count, then the default config at half and twice
    # that count (is choose_splits' WAVES / MIN_SPLIT_KEYS right for this shape?).
    runs = [(cfg, 0) for cfg in ta.CANDIDATES]
    runs += [(default, n) for n in sorted({max(1, auto // 2), auto * 2} - {auto})]
    for cfg, splits in runs:
        def call(cfg=cfg, splits=splits):
            return ta.attention_decode(q4, attn.kc, vc, attn.table, attn.lens, attn.k_scale,
                                       None if vc is None else attn.v_scale, 1.0,
                                       attn.kind.window, attn.seq_len, splits, config=cfg)
        name = config_name(cfg)
        launched = splits or ta.auto_splits(q4, attn.kc, attn.table, attn.kind.window,
                                            attn.seq_len, cfg[0])
        run_fields = dict(fields, op="fp8_decode", config=name, splits=launched,
                          auto_splits=auto)
        try:
            ms = timed(call, [()])
        except Exception as exc:  # noqa: BLE001 (a candidate that does not compile is a result)
            rows.append(dict(run_fields, error=str(exc)[:160]))
            continue
        rows.append(dict(run_fields, ms=ms, bytes=nbytes,
                         bandwidth_GBps=nbytes / (ms * 1e-3) / 1e9,
                         fraction_of_copy=nbytes / (ms * 1e-3) / copy_bw))
        print(rows[-1], flush=True)
    return rows


def plot_steps(plt, rows):
    steps = [r for r in rows if r["kind"] == "step"]
    contexts = sorted({r["context"] for r in steps})
    fig, axes = plt.subplots(1, max(1, len(contexts)), figsize=(6 * max(1, len(contexts)), 4),
                             squeeze=False)
    for ax, context in zip(axes[0], contexts):
        batches = sorted({r["batch"] for r in steps})
        recipes = [r for r in RECIPES if any(s["recipe"] == r for s in steps)]
        width = 0.8 / max(1, len(recipes))
        for i, recipe in enumerate(recipes):
            ys = [next((r["projected_ms"] for r in steps if r["recipe"] == recipe
                        and r["batch"] == b and r["context"] == context), 0) for b in batches]
            ax.bar([j + i * width for j in range(len(batches))], ys, width, label=recipe)
        ax.set_xticks([j + width * (len(recipes) - 1) / 2 for j in range(len(batches))],
                      [str(b) for b in batches])
        ax.set_xlabel("batch")
        ax.set_ylabel("ms per token step, projected to 60 layers")
        ax.set_title(f"Gemma-4-31B decode step, context {context}")
        ax.legend()
    return fig


def plot_kernel(plt, rows):
    kern = [r for r in rows if r.get("config") == "default" and "fraction_of_copy" in r]
    fig, ax = plt.subplots(figsize=(7, 4))
    for shape in sorted({r["shape"] for r in kern}):
        for batch in sorted({r["batch"] for r in kern}):
            pts = sorted((r["context"], r["fraction_of_copy"]) for r in kern
                         if r["shape"] == shape and r["batch"] == batch)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                    label=f"{shape}, batch {batch}")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("context (keys)")
    ax.set_ylabel("fraction of copy bandwidth (FP8 cache bytes)")
    ax.axhline(0.75, color="gray", linestyle="--")
    ax.legend(fontsize=7)
    return fig


def run(args):
    device = harness.setup_device(args)
    shape = TINY if args.smoke else GEMMA4_31B
    if args.smoke:
        args.batches, args.contexts = [2], [40]
        args.layers = min(args.layers, 6)
    if args.kernel_only:
        rows = run_kernel_only(args, device)
        harness.write_results("bench_decode_attention", rows, args.out, plot=plot_kernel)
        return rows
    if args.via_checkpoint is None and args.smoke and args.smoke_checkpoint:
        args.via_checkpoint = tempfile.mkdtemp(prefix="decode-step-ckpt-")
    rows = run_step(args, device, shape)
    harness.write_results("bench_decode_step", rows, args.out, plot=plot_steps)
    return rows


def main(argv=None):
    p = harness.common_args(__doc__.splitlines()[0])
    p.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=RECIPES)
    p.add_argument("--batches", nargs="+", type=int, default=[1, 8, 32])
    p.add_argument("--contexts", nargs="+", type=int, default=[4096, 32768])
    p.add_argument("--layers", type=int, default=6,
                   help="decoder layers in the stack (every 6th is a full layer)")
    p.add_argument("--block-size", type=int, default=16, help="FP8 cache block size")
    p.add_argument("--full-kv", choices=("separate", "shared"), default="separate",
                   help="full layers: a value cache (V = v_norm(k_proj x)) or V read from the "
                        "key cache (K-equals-V)")
    p.add_argument("--nvfp4-activations", choices=("bf16", "nvfp4"), default="bf16",
                   help="activations of the NVFP4 layers: bf16 (W4A16) or nvfp4 (W4A4)")
    p.add_argument("--via-checkpoint", default=None, metavar="DIR",
                   help="build NVFP4 layers by quantize_checkpoint + load_model through DIR")
    p.add_argument("--smoke-checkpoint", action="store_true",
                   help="with --smoke: go through a temporary checkpoint")
    p.add_argument("--attention-backend", default=None,
                   help="force the attention/KV-cache backend (default: automatic)")
    p.add_argument("--kernel-only", action="store_true",
                   help="the decode attention kernel alone vs gather-to-bf16 + SDPA")
    p.add_argument("--kernel-batches", nargs="+", type=int, default=None,
                   help="--kernel-only batches (default 8 16 32; with --sweep 1 8 16 32)")
    p.add_argument("--kernel-contexts", nargs="+", type=int, default=None,
                   help="--kernel-only contexts (default 4K 8K 16K 32K; with --sweep 4K 32K)")
    p.add_argument("--sweep", action="store_true",
                   help="--kernel-only: also time every Triton config candidate")
    return run(p.parse_args(argv))


if __name__ == "__main__":
    main()
