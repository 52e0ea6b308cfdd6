"""Ahead-of-time compile of the Triton backend's kernels for sm_90 (H100), no GPU needed.

Run as a script in a process *without* TRITON_INTERPRET=1 (Triton decides interpret-or-compile
when a kernel is defined). Each kernel is compiled with ``triton.compile`` on an ``ASTSource``
for ``GPUTarget("cuda", 90, 32)`` with the constexprs, argument types, warps and stages its
launcher uses, into a fresh Triton cache directory (so every run really compiles). Prints one
JSON object: {"triton": version, "ok": bool, "kernels": {name: {...}}} where each kernel has
"ok", "error" (on failure) and facts read from the PTX and from the SASS that the bundled
cuobjdump disassembles from the cubin:

- wgmma / mma_sync: count of ``wgmma.mma_async`` / ``mma.sync`` instructions in the PTX
- div_rn / div_approx / div_full: count of ``div.rn.f32`` / ``div.approx`` / ``div.full``
- ftz: count of PTX instructions with ``.ftz``
- local_ld / local_st: count of ``LDL`` / ``STL`` instructions in the SASS (local memory:
  register spills or a stack frame); null when no SASS could be produced
- shared: shared memory bytes from Triton's metadata
- sass_hgmma / sass_hmma / sass_ffma: tensor-core and float32 FMA instructions in the SASS
- sass_ldg_u8 / sass_lds_u8: byte-wide global / shared loads
- sass_ldg128 / sass_ldg128_const: 16-byte global loads (all / read-only ``.CONSTANT`` ones)
- registers: registers per thread from the cubin's resource usage (null if unreadable)
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import sys
import tempfile
import traceback
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # the package, when run as a plain script


def _specs():
    """(name, fn, {arg: type}, {constexpr: value}, divisible-by-16 args, num_warps, stages)."""
    import triton
    import triton.language as tl

    from nvfp4_kernels.backends.triton import (amax, attention, dequantize, gemm, gemv, kv_cache,
                                               quantize)
    from nvfp4_kernels.backends.triton.plan import config_for, gemv_config_for, split_k_for

    specs = []

    def gemm_spec(name, cfg, a_nvfp4, a_type, dot_dtype, split, alpha_per_col, has_bias):
        # Argument order and constexprs as gemm._launch passes them (GPU: BF16_BY_BITS=False).
        sig = {"a_ptr": "*u8" if a_nvfp4 else a_type, "a_scale_ptr": "*u8" if a_nvfp4 else a_type,
               "b_ptr": "*u8", "b_scale_ptr": "*u8", "alpha_ptr": "*fp32",
               "bias_ptr": "*bf16" if has_bias else "*fp32", "out_ptr": "*bf16",
               "ws_ptr": "*fp32" if split > 1 else "*bf16",
               "M": "i32", "N": "i32", "K": "i32", "K_SPLIT": "i32", "A_SCP4": "i32",
               "B_SCP4": "i32"}
        const = dict(A_NVFP4=a_nvfp4, B_SWIZZLED=True, DOT_DTYPE=dot_dtype,
                     FOLD=2.0 ** 28 if a_nvfp4 else 2.0 ** 14, ALPHA_PER_COL=alpha_per_col,
                     HAS_BIAS=has_bias, SPLIT_K=split, SWAP_AB=cfg.swap_ab, GROUP_M=cfg.group_m,
                     BF16_BY_BITS=False, BM=cfg.block_m, BN=cfg.block_n, BK=cfg.block_k)
        # Pointers from torch allocations are 16-byte aligned; N, K (and K_SPLIT, a multiple
        # of BK) are multiples of 16 for real layers, M generally is not.
        div16 = [k for k, v in sig.items() if v.startswith("*")] + ["N", "K", "K_SPLIT"]
        specs.append((name, gemm._gemm_kernel, sig, const, div16, cfg.num_warps, cfg.num_stages,
                      dataclasses.asdict(cfg) | {"split_k": split}))

    # Decode: M = 1 (plan's M <= 16 bucket) on a down projection N=5376, K=21504, 132 SMs,
    # split-K chosen exactly as the launcher does.
    m, n, k = 1, 5376, 21504
    dec = config_for(m)
    split = split_k_for(dec, m, n, k, 132)
    steps = triton.cdiv(k, dec.block_k)
    split = max(1, min(split, steps))
    split = triton.cdiv(k, triton.cdiv(steps, split) * dec.block_k)
    assert split > 1, "decode shape no longer splits K; pick another shape"
    gemm_spec("gemm_w4a16_decode", dec, False, "*bf16", tl.bfloat16, split, False, False)
    # Prefill: plan's M > 256 bucket, per-column alpha and a bias, no split.
    pre = config_for(4096)
    gemm_spec("gemm_w4a16_prefill", pre, False, "*bf16", tl.bfloat16, 1, True, True)
    # W4A4 (A decoded like B, fp16 dot), prefill tiles; swap_ab off covers the kernel's other
    # operand order (plan.CANDIDATES has it).
    gemm_spec("gemm_w4a4_prefill_noswap", dataclasses.replace(pre, swap_ab=False), True,
              "*u8", tl.float16, 1, False, False)

    def gemv_spec(name, m, n, k, a_type, layout_swizzled, has_bias):
        # Argument order, constexprs and launch shape as gemv._launch passes them on a GPU.
        cfg = gemv_config_for()
        bm, bn, bkw, steps, split = gemv.launch_shape(cfg, m, n, k, 132)
        a_nvfp4 = a_type == "nvfp4"
        sig = {"a_ptr": "*i32" if a_nvfp4 else a_type, "a_scale_ptr": "*u8" if a_nvfp4 else a_type,
               "b_ptr": "*i32", "b_scale_ptr": "*u8", "alpha_ptr": "*fp32",
               "bias_ptr": "*bf16" if has_bias else "*fp32", "out_ptr": "*bf16",
               "ws_ptr": "*fp32" if split > 1 else "*bf16", "M": "i32", "N": "i32", "K": "i32",
               "KW": "i32", "STEPS": "i32", "A_SCP4": "i32", "B_SCP4": "i32"}
        const = dict(A_NVFP4=a_nvfp4, B_SWIZZLED=layout_swizzled,
                     FOLD=2.0 ** 28 if a_nvfp4 else 2.0 ** 14, ALPHA_PER_COL=has_bias,
                     HAS_BIAS=has_bias, SPLIT_K=split, BF16_BY_BITS=False, USE_ASM=True,
                     BM=bm, BN=bn, BKW=bkw)
        div16 = [k for k, v in sig.items() if v.startswith("*")] + ["N", "K", "KW"]
        specs.append((name, gemv._gemv_kernel, sig, const, div16, cfg.num_warps, 1,
                      dataclasses.asdict(cfg) | {"block_m": bm, "block_n": bn,
                                                 "step_words": bkw, "split_k": split}))

    # The GEMV the triton backend uses for M <= plan.GEMV_MAX_M: M = 1 on gate_up (bf16
    # activations, swizzled scales), M = 4 (4 tokens per program) on o with fp16 activations,
    # linear scales, per-row alpha and bias, and W4A4 at M = 1 on down.
    gemv_spec("gemv_w4a16_m1", 1, 43008, 5376, "*bf16", True, False)
    gemv_spec("gemv_w4a16_m4", 4, 5376, 8192, "*fp16", False, True)
    gemv_spec("gemv_w4a4_m1", 1, 5376, 21504, "nvfp4", True, False)

    specs.append(("split_k_reduce", gemm._split_k_reduce_kernel,
                  {"ws_ptr": "*fp32", "alpha_ptr": "*fp32", "bias_ptr": "*fp32",
                   "out_ptr": "*bf16", "M": "i32", "N": "i32"},
                  dict(FOLD=2.0 ** 14, ALPHA_PER_COL=False, HAS_BIAS=False, SPLIT_K=split,
                       BF16_BY_BITS=False, BM=16, BN=128),
                  ["ws_ptr", "alpha_ptr", "bias_ptr", "out_ptr", "N"], 4, 3, {}))

    qb = dict(BLOCK_R=quantize._BLOCK_R, BLOCK_S=quantize._BLOCK_S, SWIZZLED=True)
    specs.append(("quantize", quantize._quantize_kernel,
                  {"x_ptr": "*bf16", "gs_ptr": "*fp32", "data_ptr": "*u8", "scale_ptr": "*u8",
                   "R": "i32", "C": "i32", "SROWS": "i32", "SCOLS": "i32", "SCP4": "i32"},
                  qb, ["x_ptr", "gs_ptr", "data_ptr", "scale_ptr", "C", "SCOLS"], 4, 3, {}))
    dq_rows, dq_tiles, dq_warps = dequantize.DEFAULT_CONFIG
    dq_sig = {"words_ptr": "*i32", "scale_ptr": "*u8", "gs_ptr": "*fp32", "factor_ptr": "*fp32",
              "out_ptr": "*bf16", "R": "i32", "W": "i32", "SCP4": "i32"}
    dq_const = dict(BLOCK_R=dq_rows, BLOCK_W=32, ROW_TILES=dq_tiles, SWIZZLED=True, FACTOR=False,
                    FACTOR_PER_ROW=False, INDEX64=False, INTERPRET=False)
    dq_div16 = ["words_ptr", "scale_ptr", "gs_ptr", "factor_ptr", "out_ptr", "W"]
    specs.append(("dequantize", dequantize._dequantize_kernel, dq_sig, dq_const, dq_div16,
                  dq_warps, 3, {}))
    specs.append(("dequantize_scaled", dequantize._dequantize_kernel, dq_sig,
                  dq_const | dict(FACTOR=True, FACTOR_PER_ROW=True), dq_div16, dq_warps, 3, {}))
    # 64-bit offsets: what the launcher uses for tensors of 2**31 elements or more.
    specs.append(("dequantize_index64", dequantize._dequantize_kernel, dq_sig,
                  dq_const | dict(INDEX64=True, SWIZZLED=False), dq_div16, dq_warps, 3, {}))

    # Global scale (amax pass): bf16 input, the launcher's block, the division fused.
    specs.append(("global_scale", amax._amax_kernel,
                  {"x_ptr": "*bf16", "ws_ptr": "*i32", "out_ptr": "*fp32", "numel": "i32",
                   "STEPS": "i32"},
                  dict(GLOBAL_SCALE=True, BLOCK=amax._BLOCK),
                  ["x_ptr", "ws_ptr", "out_ptr"], amax._NUM_WARPS, 3, {}))

    # KV cache: 8 heads x 128 dims, per-tensor scales (kv_cache._blocks picks the blocks).
    block_h, block_d = kv_cache._blocks(8, 128)
    specs.append(("kv_cache_write", kv_cache._kv_write_kernel,
                  {"key_ptr": "*bf16", "value_ptr": "*bf16", "kc_ptr": "*u8", "vc_ptr": "*u8",
                   "slot_ptr": "*i64", "ks_ptr": "*fp32", "vs_ptr": "*fp32", "H": "i32",
                   "D": "i32", "NUM_SLOTS": "i32"},
                  dict(K_PER_HEAD=False, V_PER_HEAD=False, BLOCK_H=block_h, BLOCK_D=block_d),
                  ["key_ptr", "value_ptr", "kc_ptr", "vc_ptr", "slot_ptr", "ks_ptr", "vs_ptr",
                   "D"], 4, 3, {}))
    specs.append(("kv_cache_gather", kv_cache._kv_gather_kernel,
                  {"kc_ptr": "*u8", "vc_ptr": "*u8", "table_ptr": "*i32", "cu_ptr": "*i64",
                   "lens_ptr": "*i32", "ks_ptr": "*fp32", "vs_ptr": "*fp32", "ko_ptr": "*bf16",
                   "vo_ptr": "*bf16", "B": "i32", "H": "i32", "D": "i32",
                   "TABLE_STRIDE": "i32", "TABLE_COLS": "i32", "BLOCK_SIZE": "i32",
                   "NUM_BLOCKS": "i32"},
                  dict(SEARCH_STEPS=(8).bit_length() + 1, K_PER_HEAD=True, V_PER_HEAD=True,
                       BF16_BY_BITS=False, BLOCK_H=block_h, BLOCK_D=block_d),
                  ["kc_ptr", "vc_ptr", "table_ptr", "cu_ptr", "lens_ptr", "ks_ptr", "vs_ptr",
                   "ko_ptr", "vo_ptr", "D", "BLOCK_SIZE"], 4, 3, {}))

    # Decode attention, Gemma-4-31B's two layer kinds with the launcher's default configs:
    # sliding (32 q / 16 kv heads at 256, window, bf16 q) and full (32 q / 4 kv at 512, K = V);
    # split-KV (partials to the workspaces), e4m3 decoded by the SM89+ instruction.
    def attention_spec(name, dim, group, window):
        block_n, warps, stages, words, prefetch = attention.config_for(dim)
        sig = {"q_ptr": "*bf16", "kc_ptr": "*u8", "vc_ptr": "*u8", "table_ptr": "*i32",
               "lens_ptr": "*i32", "ks_ptr": "*fp32", "vs_ptr": "*fp32", "out_ptr": "*bf16",
               "acc_ws": "*fp32", "ml_ws": "*fp32", "qk_scale": "fp32", "v_fold": "fp32",
               "Q_LEN": "i32", "HQ": "i32", "HKV": "i32", "ROW_STRIDE": "i32",
               "ROW_WORDS": "i32", "TABLE_STRIDE": "i32", "TABLE_COLS": "i32",
               "NUM_BLOCKS": "i32", "WINDOW": "i32",
               "SPLITS": "i32"}
        const = dict(GROUP=group, BLOCK_SIZE=16, HEAD_DIM=dim, BLOCK_D=dim, BLOCK_W=dim // 4,
                     BLOCK_R=attention.rows_per_program(group, dim), BLOCK_N=block_n,
                     ROW_BLOCKS=1, SINGLE=False, K_PER_HEAD=False, V_PER_HEAD=False, HW_CVT=True,
                     DOT_F32=False, HAS_WINDOW=window, BF16_BY_BITS=False, WORDS=words,
                     PREFETCH=prefetch, V_FIRST=stages == 1)
        # kv_heads * head_dim (ROW_STRIDE, in bytes and in words) is a multiple of 16 for
        # Gemma's caches (16 x 256, 4 x 512).
        div16 = [k for k, v in sig.items() if v.startswith("*")] + ["ROW_STRIDE", "ROW_WORDS"]
        specs.append((name, attention._decode_kernel, sig, const, div16, warps, stages,
                      {"block_n": block_n, "words": words, "prefetch": prefetch}))

    attention_spec("attention_decode_d256", 256, 2, True)
    attention_spec("attention_decode_d512", 512, 8, False)
    specs.append(("attention_combine", attention._combine_kernel,
                  {"acc_ws": "*fp32", "ml_ws": "*fp32", "out_ptr": "*bf16", "SPLITS": "i32"},
                  dict(HEAD_DIM=256, BLOCK_D=attention.COMBINE_BLOCK_D,
                       BLOCK_S=attention.COMBINE_BLOCK_S, BF16_BY_BITS=False),
                  ["acc_ws", "ml_ws", "out_ptr"], 4, 3, {}))
    return specs


def _registers(compiled):
    """Registers per thread from the cubin's resource usage, read with the cuobjdump that
    Triton itself uses for the SASS; None if that fails."""
    import subprocess

    try:
        from triton.tools.disasm import path_to_cuobjdump
        with tempfile.NamedTemporaryFile(suffix=".cubin") as f:
            f.write(compiled.asm["cubin"])
            f.flush()
            out = subprocess.run([path_to_cuobjdump(), "--dump-resource-usage", f.name],
                                 capture_output=True, text=True, timeout=120).stdout
    except Exception:
        return None
    found = re.search(r"REG:(\d+)", out)
    return int(found.group(1)) if found else None


def _count(pattern, text):
    return len(re.findall(pattern, text)) if text is not None else None


def _compile(fn, sig, const, div16, num_warps, num_stages):
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    signature = dict(sig) | {name: "constexpr" for name in const}
    signature = {name: signature[name] for name in fn.arg_names}  # declaration order
    attrs = {(fn.arg_names.index(name),): [["tt.divisibility", 16]] for name in div16}
    src = ASTSource(fn=fn, signature=signature, constexprs=const, attrs=attrs)
    return triton.compile(src, target=GPUTarget("cuda", 90, 32),
                          options={"num_warps": num_warps, "num_stages": num_stages})


def main() -> int:
    if os.environ.get("TRITON_INTERPRET") == "1":
        print(json.dumps({"ok": False, "error": "TRITON_INTERPRET=1 is set; unset it"}))
        return 2
    os.environ["TRITON_CACHE_DIR"] = tempfile.mkdtemp(prefix="triton-sm90-")
    import triton

    result = {"triton": triton.__version__, "ok": True, "kernels": {}}
    try:
        specs = _specs()
    except Exception:
        result.update(ok=False, error=traceback.format_exc())
        print(json.dumps(result))
        return 1
    for name, fn, sig, const, div16, warps, stages, cfg in specs:
        info = {"ok": False, "num_warps": warps, "num_stages": stages, "config": cfg}
        try:
            compiled = _compile(fn, sig, const, div16, warps, stages)
            ptx = compiled.asm["ptx"]
            try:
                sass = compiled.asm["sass"]
            except Exception:  # cuobjdump missing: report null, the test decides
                sass = None
            info.update(
                ok=True, arch=compiled.metadata.target.arch, shared=compiled.metadata.shared,
                asm_keys=sorted(compiled.asm.keys()),
                wgmma=_count(r"\bwgmma\.mma_async\b", ptx), mma_sync=_count(r"\bmma\.sync\b", ptx),
                div_rn=_count(r"\bdiv\.rn\.f32\b", ptx), div_approx=_count(r"\bdiv\.approx\b", ptx),
                div_full=_count(r"\bdiv\.full\b", ptx), ftz=_count(r"\.ftz\b", ptx),
                local_ld=_count(r"\bLDL(?:\.\w+)*\s", sass), local_st=_count(r"\bSTL(?:\.\w+)*\s", sass),
                sass_hgmma=_count(r"\bHGMMA\b", sass), sass_hmma=_count(r"\bHMMA\b", sass),
                ftz_ex2=_count(r"\bex2\.approx\.ftz\.f32\b", ptx),
                sass_ldg_u8=_count(r"\bLDG\.E\.U8\b", sass),
                sass_lds_u8=_count(r"\bLDS\.U8\b", sass),
                sass_ld_128=_count(r"\b(?:LDG\.E|LDGSTS\.E(?:\.BYPASS)?)\.128\b", sass),
                sass_ffma=_count(r"\bFFMA\b", sass),
                sass_ldg128=_count(r"\bLDG\.E\.128\b", sass),
                sass_ldg128_const=_count(r"\bLDG\.E\.128\.CONSTANT\b", sass),
                sass_shared=_count(r"\b(?:STS|LDS|LDSM)(?:\.\w+)*\s", sass),
                sass_fchk=_count(r"\bFCHK\b", sass),
                registers=_registers(compiled) if sass is not None else None)
        except Exception:
            info["error"] = traceback.format_exc()[-4000:]
            result["ok"] = False
        result["kernels"][name] = info
    print(json.dumps(result))
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
