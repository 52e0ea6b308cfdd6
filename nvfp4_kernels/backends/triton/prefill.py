"""Prefill GEMM route for GPUs without FP4 tensor cores: dequantize, then cuBLAS.

At prefill sizes (hundreds of tokens and more) the GEMM is compute-bound and the fused Triton
kernel's in-loop decode keeps its tensor cores waiting (issue 9: 0.28x cuBLAS bf16 at M = 8192 on
the H100). This route dequantizes the weight at memory speed (``dequantize.dequantize_scaled``)
into a bf16/fp16 workspace, one chunk of weight rows at a time, and hands each chunk to cuBLAS
(``torch.mm`` / ``torch.addmm``), which writes straight into the chunk's columns of the output
(a strided view with leading dimension N: no copy).

Workspace (the memory this route costs beyond its output):

* weight: ``chunk_rows(K) x K`` elements of 2 bytes, at most ``WORKSPACE_BYTES`` (64 MiB): 6144
  rows for K = 5376, 1536 rows for K = 21504. Without overlap one buffer serves every chunk: the
  stream orders a chunk's dequantize after the previous chunk's GEMM has read the buffer; with
  overlap (below) two buffers of that size, one being written while the other is read.
* W4A4 also dequantizes the activations once, ``M x K`` bf16: the size of the bf16 activations a
  W4A16 layer takes as input (88 MiB at M = 8192, K = 5376).

The buffers come from PyTorch's caching allocator on every call, so the route is CUDA-graph
capturable (the graph's private pool keeps them) and eager calls reuse cached blocks.

Overlap (``overlap=True``; off by default, ``OVERLAP``: measured slower on the H100, see its
comment — the mechanism is kept for GPUs and GEMM shapes where cuBLAS leaves SMs idle).
Serialized, dequantizing the whole weight
costs about a quarter of the compute-bound GEMMs' time at M = 1024 (H100: ~0.2 of 0.91 ms on
gate_up). With overlap the weight workspace holds two chunks (twice the bytes above) and chunk
i + 1 is dequantized on a side stream (high priority by default, ``SIDE_PRIORITY``) while cuBLAS
multiplies chunk i on the caller's stream, so the dequantize CTAs take SMs as GEMM CTAs retire
instead of waiting for the whole GEMM. Events order each chunk's GEMM after its dequantize and
each dequantize after the GEMM that last read its buffer; the side stream first waits for the
caller's stream (fork) and the caller's stream waits for it before returning (join). That join
is also why the buffers need no ``record_stream``: everything issued later on the caller's
stream, including whatever reuses their memory, is ordered after the side stream's work. Fork
and join by events are legal inside CUDA-graph capture, and the result depends only on the
chunks, so it is bit-identical with the in-order schedule of the same chunks. With overlap the
chunks ramp up by default (a small first chunk, doubling; ``_chunks``), so that the one
dequantize nothing hides is short. On CPU tensors (the interpreter tests) there are no streams:
the same code issues everything in order, with the same two buffers.

Dequantize backend (``dequant=None``: "cuda" when the compiled extension can run on this GPU,
else "triton"): the extension's kernel (csrc/include/nvfp4/dequantize.cuh) runs at ~96 % of copy
bandwidth on the H100, Triton's at 78-84 %; both write bit-identical chunks.

Numerics (DESIGN's bar, ``||D - D_ref|| / ||D_ref|| <= 5e-3`` against float64): the weight chunk
holds ``lut * s * alpha[n]`` rounded once to the compute dtype (alpha = 1/gs_b, or 1/(gs_a*gs_b)
for W4A4, folded in so that cuBLAS needs no epilogue), the W4A4 activations hold ``lut * s``
exactly; cuBLAS accumulates in float32. W4A16 computes in the activations' dtype. W4A4 computes
in bf16 whatever the output dtype: its weight chunk is W/gs_a, which can fall below fp16's
normal range; an fp16 output is then one extra rounding of the bf16 result.

Opt-in FP8 mode (lossy; ``NVFP4_PREFILL_MODE=fp8``, read on first use, or ``mode="fp8"``):
the weight chunk is dequantized straight to e4m3 as ``lut * s / 8`` (every product fits below
448; rounding a 6-bit product to e4m3's 4 significant bits is the loss) with per-column scale
``8 * alpha[n]``, the activations are quantized to e4m3 per row (``fp8.quantize_rows``; W4A4:
``lut * s / 8`` of the activations with scale 8), and ``torch._scaled_mm`` with row-wise scales
multiplies them on the FP8 tensor cores (twice the bf16 rate on Hopper). The weight chunk takes
1 byte per element, so a chunk holds twice the rows. ``benchmarks/bench_prefill.py`` reports
its error against the float64 reference next to its speed. Needs N a multiple of 16 (cuBLASLt);
other shapes run the exact route.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os

import torch

from nvfp4_kernels.backends import registry
from nvfp4_kernels.backends.triton import fp8, plan
from nvfp4_kernels.backends.triton import dequantize as triton_dequantize
from nvfp4_kernels.reference import BLOCK, swizzled_shape

WORKSPACE_BYTES = 64 << 20  # bound of one dequantized weight chunk (overlap holds two)
# Dequantize chunk i + 1 on a side stream during chunk i's GEMM: off by default, measured
# slower on the H100 at every M and layer (bench_prefill.py, 2026-11-27: M = 1024 geomean 0.67x
# cuBLAS with overlap at high priority, 0.74x at normal priority, 0.76x in order; cuBLAS's
# kernels keep every SM busy, so the dequantize only competes with them).
OVERLAP = False
SIDE_PRIORITY = -1          # that stream's priority: -1 high (CUDA's lower is higher), 0 normal
RAMP = True                 # with overlap, chunks ramp up (see _chunks); never without it
RAMP_FIRST = 8              # first ramp chunk: 1/8 of a full one
DEQUANT_BACKENDS = ("cuda", "triton")
_ROW_ALIGN = 128            # chunks start on 128-row tiles of the swizzled scale layout
MODE_ENV = "NVFP4_PREFILL_MODE"
MODES = ("exact", "fp8")
_FP8_FOLD = 0.125           # lut * s <= 6 * 448 = 2688; / 8 fits e4m3 (max 448) exactly

_mode: list = []


def mode() -> str:
    """The prefill numerics: "exact" (default) or the opt-in, lossy "fp8" (NVFP4_PREFILL_MODE,
    read on first use; clear_mode() reads it again)."""
    if not _mode:
        value = os.environ.get(MODE_ENV) or "exact"
        if value not in MODES:
            raise ValueError(f"{MODE_ENV}: expected one of {MODES}, got {value!r}")
        _mode.append(value)
    return _mode[0]


def clear_mode() -> None:
    _mode.clear()


def takes(a: torch.Tensor) -> bool:
    """Whether the automatic choice sends this GEMM here: a CUDA GPU whose arch has a measured
    crossover in plan.PREFILL_MIN_M, and at least that many tokens."""
    if not a.is_cuda:
        return False
    bound = plan.PREFILL_MIN_M.get(registry.capability(a.device)[0])
    return bound is not None and a.shape[0] >= bound


def chunk_rows(k: int, workspace_bytes: int = WORKSPACE_BYTES, element_bytes: int = 2) -> int:
    """Weight rows per chunk: as many 128-row tiles as fit the workspace, at least one."""
    return max(_ROW_ALIGN, workspace_bytes // (element_bytes * k) // _ROW_ALIGN * _ROW_ALIGN)


def _plan(n: int, k: int, budget: int, element_bytes: int, overlap: bool, ramp: bool):
    """(rows of one chunk buffer, the chunks [(n0, rows)], buffers): a buffer holds at most
    `budget` bytes and no more 128-row tiles than N needs."""
    rows = min(chunk_rows(k, budget, element_bytes), -(-n // _ROW_ALIGN) * _ROW_ALIGN)
    chunks = _chunks(n, rows, ramp)
    return rows, chunks, _slots(overlap, len(chunks))


def workspace_bytes(m: int, n: int, k: int, w4a4: bool, budget: int = WORKSPACE_BYTES,
                    fp8: bool = False, overlap: bool = False) -> int:
    """Bytes this route allocates besides its output (for docs and benchmarks)."""
    size = 1 if fp8 else 2
    rows, _, slots = _plan(n, k, budget, size, overlap, overlap and RAMP)
    weight = rows * k * size * slots
    # Activations: W4A4 dequantizes them (bf16, or e4m3 in FP8 mode); FP8 W4A16 quantizes them
    # to e4m3 plus one float32 scale per row.
    act = m * k * size if (w4a4 or fp8) else 0
    return weight + act + (4 * m if fp8 else 0)


def _scale_rows(scale: torch.Tensor, scale_layout: str, n0: int, rows: int, k: int):
    """The scales of weight rows [n0, n0 + rows), n0 a multiple of 128, in the same layout."""
    if scale_layout == "linear":
        return scale[n0:n0 + rows]
    tile = swizzled_shape(1, k // BLOCK)[1] * _ROW_ALIGN  # bytes per 128-row tile
    first, tiles = n0 // _ROW_ALIGN, -(-rows // _ROW_ALIGN)
    return scale.reshape(-1)[first * tile:(first + tiles) * tile]


def _slots(overlap: bool, chunks: int) -> int:
    """Weight buffers: two to dequantize one chunk while the other is multiplied."""
    return 2 if overlap and chunks > 1 else 1


def dequant_backend(device: torch.device, requested: str | None = None) -> str:
    """The dequantize kernel the route uses on `device`: `requested` ("cuda" or "triton"), or
    by default the extension's where it can run here, else Triton's."""
    if requested is not None:
        if requested not in DEQUANT_BACKENDS:
            raise ValueError(f"dequant: expected one of {DEQUANT_BACKENDS} or None, "
                             f"got {requested!r}")
        if requested == "cuda" and _cuda_reason(device) is not None:
            raise ValueError(f"dequant='cuda': {_cuda_reason(device)}")
        return requested
    return "cuda" if _cuda_reason(device) is None else "triton"


def _cuda_reason(device: torch.device) -> str | None:
    if device.type != "cuda":
        return "needs a CUDA tensor"
    return _cuda_reason_on(device.index if device.index is not None
                           else torch.cuda.current_device())


@functools.cache
def _cuda_reason_on(index: int) -> str | None:
    """Why the extension's scaled dequantize cannot run on CUDA device `index` (None: it can)."""
    from nvfp4_kernels import _extension
    reason = _extension.why_missing()  # silent: Triton's kernel is a full substitute here
    if reason is not None:
        return reason
    major, minor = registry.capability(torch.device("cuda", index))
    if major < 8:
        return f"the extension's kernels need SM80+, this GPU is SM{major}{minor}"
    reason = _extension.arch_mismatch("cuda", major, minor)
    if reason is None and not hasattr(_extension.extension(), "dequantize_scaled"):
        reason = "the compiled extension predates dequantize_scaled; rebuild it"
    return reason


def _dequantize_scaled(backend, data, scale, factor, scale_layout, dtype, out=None):
    """lut[q] * s * factor[row] rounded once to dtype (bit-identical on both backends)."""
    if backend == "triton":
        return triton_dequantize.dequantize_scaled(data, scale, factor, scale_layout, dtype,
                                                   out=out)
    from nvfp4_kernels import _extension
    if out is None:
        out = torch.empty((data.shape[0], data.shape[1] * 2), dtype=dtype, device=data.device)
    return _extension.extension().dequantize_scaled(
        data, scale.view(torch.float8_e4m3fn), factor.reshape(-1).float(),
        scale_layout == "swizzled", out)


class _InOrder:
    """Both lanes on the current stream: CPU tensors, or overlap off."""

    def fork(self):
        pass

    def side(self):
        return contextlib.nullcontext()

    def mark_side(self):
        return None

    def mark_main(self):
        return None

    def main_waits(self, event):
        pass

    def side_waits(self, event):
        pass

    def join(self):
        pass


class _TwoStreams(_InOrder):
    """Dequantize on a side stream, GEMMs on the caller's (see the module doc)."""

    def __init__(self, device: torch.device, priority: int):
        self.main = torch.cuda.current_stream(device)
        self.other = _side_stream(self.main.device_index, priority)

    def fork(self):
        self.other.wait_stream(self.main)

    def side(self):
        return torch.cuda.stream(self.other)

    def mark_side(self):
        return self.other.record_event()

    def mark_main(self):
        return self.main.record_event()

    def main_waits(self, event):
        self.main.wait_event(event)

    def side_waits(self, event):
        self.other.wait_event(event)

    def join(self):
        self.main.wait_stream(self.other)


@functools.cache
def _side_stream(index: int, priority: int) -> torch.cuda.Stream:
    # High priority (-1): the block scheduler hands SMs that GEMM CTAs free to pending dequantize
    # CTAs before the GEMM's own next wave; normal priority (0) lets them fill only the SMs the
    # GEMM leaves idle (its last, partial wave). Which hides more is measured by
    # benchmarks/bench_prefill.py.
    return torch.cuda.Stream(device=index, priority=priority)


def _pipelined(chunks, slots, device, produce, consume, priority=SIDE_PRIORITY):
    """consume(i, produce(i, slot)) for every chunk, produce(i + 1) overlapping consume(i) when
    two slots and a CUDA device allow it. A chunk's slot is reused by chunk i + slots, so that
    dequantize waits for the GEMM that read the slot last."""
    lanes = (_TwoStreams(device, priority) if slots == 2 and device.type == "cuda"
             else _InOrder())
    lanes.fork()
    with lanes.side():
        operand = produce(0, 0)
        ready = lanes.mark_side()
    read = []  # event per consumed chunk
    for i in range(len(chunks)):
        lanes.main_waits(ready)
        consume(i, operand)
        read.append(lanes.mark_main())
        if i + 1 < len(chunks):
            with lanes.side():
                if i + 1 - slots >= 0:
                    lanes.side_waits(read[i + 1 - slots])
                operand = produce(i + 1, (i + 1) % slots)
                ready = lanes.mark_side()
    lanes.join()


def _chunks(n: int, rows: int, ramp: bool = False) -> list[tuple[int, int]]:
    """(first row, rows) of each weight chunk: `rows` each, or with `ramp` starting at
    rows / RAMP_FIRST and doubling up to `rows` (every chunk a whole number of 128-row tiles).

    Why the ramp: with overlap, only the first chunk's dequantize is exposed (nothing runs
    beside it), and a chunk's dequantize hides under the previous chunk's GEMM while it is
    shorter: at M = 1024 on the H100 dequantizing a row costs about 0.3x multiplying it, so the
    next chunk may be twice as large. A layer of two or three full chunks (o: 4096 + 1280 rows;
    qkv: 6144 + 6144 + 4096) would otherwise expose most of its dequantize."""
    out, n0 = [], 0
    size = max(_ROW_ALIGN, rows // RAMP_FIRST // _ROW_ALIGN * _ROW_ALIGN) if ramp else rows
    while n0 < n:
        out.append((n0, min(size, n - n0)))
        n0 += size
        size = min(rows, 2 * size)
    return out


def _chunked(a, b, b_scale, alpha, scale_layout, compute_dtype, out_dtype, bias, budget, sched):
    m, n, k = a.shape[0], b.shape[0], b.shape[1] * 2
    out = torch.empty((m, n), dtype=out_dtype, device=a.device)
    if m == 0 or n == 0:
        return out
    if k == 0:
        return out.zero_() if bias is None else out.copy_(bias.to(out_dtype).expand(m, n))
    rows, chunks, slots = _plan(n, k, budget, 2, sched.overlap, sched.ramp)
    ws = torch.empty((slots, rows, k), dtype=compute_dtype, device=a.device)
    alpha = alpha.reshape(-1).float()
    per_row = alpha.numel() > 1
    bias_c = bias.to(compute_dtype) if bias is not None else None
    direct = out_dtype == compute_dtype

    def produce(i, slot):
        n0, nc = chunks[i]
        return _dequantize_scaled(sched.dequant, b[n0:n0 + nc],
                                  _scale_rows(b_scale, scale_layout, n0, nc, k),
                                  alpha[n0:n0 + nc] if per_row else alpha, scale_layout,
                                  compute_dtype, out=ws[slot, :nc])

    def consume(i, w):
        n0, nc = chunks[i]
        dst = out[:, n0:n0 + nc]
        if bias_c is None:
            res = torch.mm(a, w.t(), out=dst) if direct else torch.mm(a, w.t())
        else:
            res = torch.addmm(bias_c[n0:n0 + nc], a, w.t(), out=dst) if direct else \
                torch.addmm(bias_c[n0:n0 + nc], a, w.t())
        if not direct:
            dst.copy_(res)

    _pipelined(chunks, slots, a.device, produce, consume, sched.priority)
    return out


def _fp8_chunked(a8, a_scale, b, b_scale, alpha, scale_layout, out_dtype, bias, budget, sched):
    """D = (a8 * a_scale[m]) @ (w8 * 8 alpha[n])^T per weight chunk on FP8 tensor cores."""
    m, n, k = a8.shape[0], b.shape[0], b.shape[1] * 2
    out = torch.empty((m, n), dtype=out_dtype, device=a8.device)
    if m == 0 or n == 0:
        return out
    rows, chunks, slots = _plan(n, k, budget, 1, sched.overlap, sched.ramp)
    ws = torch.empty((slots, rows, k), dtype=torch.float8_e4m3fn, device=a8.device)
    fold = torch.full((1,), _FP8_FOLD, dtype=torch.float32, device=a8.device)
    b_scale_cols = (alpha.reshape(1, -1).float() / _FP8_FOLD).expand(1, n).contiguous()

    def produce(i, slot):
        n0, nc = chunks[i]
        return _dequantize_scaled(sched.dequant, b[n0:n0 + nc],
                                  _scale_rows(b_scale, scale_layout, n0, nc, k), fold,
                                  scale_layout, torch.float8_e4m3fn, out=ws[slot, :nc])

    # Row-wise scaled FP8 GEMM; bf16 output is what cuBLASLt offers with row-wise scales. On
    # the GPU without a bias, it writes straight into the chunk's output columns (a strided
    # view): the copy of a separate result cost ~20 % at M = 8192 on gate_up (H100: 3.98 vs
    # 3.25 ms for the GEMMs alone; docs/performance.md).
    direct = a8.is_cuda and bias is None and out_dtype == torch.bfloat16

    def consume(i, w8):
        n0, nc = chunks[i]
        dst = out[:, n0:n0 + nc]
        if direct:
            _scaled_mm_rowwise(a8, w8.t(), a_scale, b_scale_cols[:, n0:n0 + nc], out=dst)
            return
        res = _scaled_mm_rowwise(a8, w8.t(), a_scale, b_scale_cols[:, n0:n0 + nc])
        if bias is not None:
            res = res + bias[n0:n0 + nc].to(res.dtype)
        dst.copy_(res)

    _pipelined(chunks, slots, a8.device, produce, consume, sched.priority)
    return out


def _scaled_mm_rowwise(a8, b8, scale_a, scale_b, out=None) -> torch.Tensor:
    """``a8 @ b8`` scaled per row of a and per column of b, bf16 out (into ``out`` if given).
    Older torch's CPU ``_scaled_mm`` takes per-tensor scales only, so on CPU (the interpreter
    tests) the same product is formed in float32: FP8 products are exact there, as on the
    tensor cores."""
    if a8.is_cuda:
        kwargs = {} if out is None else {"out": out}
        return torch._scaled_mm(a8, b8, scale_a=scale_a, scale_b=scale_b,
                                out_dtype=torch.bfloat16, **kwargs)
    res = ((a8.float() @ b8.float()) * scale_a * scale_b).to(torch.bfloat16)
    return res if out is None else out.copy_(res)


def _fp8_ok(n: int, mode_: str | None) -> bool:
    return (mode_ or mode()) == "fp8" and n % 16 == 0


@dataclasses.dataclass(frozen=True)
class _Schedule:
    overlap: bool   # two chunk buffers, dequantize on a side stream
    priority: int   # of that stream
    ramp: bool      # small first chunk, doubling (see _chunks)
    dequant: str    # "cuda" or "triton"


def _schedule(device, overlap, priority, ramp, dequant) -> _Schedule:
    overlap = OVERLAP if overlap is None else bool(overlap)
    priority = SIDE_PRIORITY if priority is None else priority
    if priority not in (-1, 0):
        raise ValueError(f"priority: expected -1 (high) or 0 (normal), got {priority!r}")
    return _Schedule(overlap, priority, (overlap and RAMP) if ramp is None else bool(ramp),
                     dequant_backend(device, dequant))


def gemm_w4a16(a, b, b_scale, b_alpha, scale_layout, out_dtype, bias, *,
               workspace=WORKSPACE_BYTES, mode=None, overlap=None, priority=None, ramp=None,
               dequant=None):
    """Dense a [M, K] (bf16/fp16) x NVFP4 weight b [N, K/2] -> [M, N], as gemm.gemm_w4a16.
    mode: "exact" or "fp8" (default: the NVFP4_PREFILL_MODE setting, see mode()); overlap:
    dequantize on a side stream during the GEMMs (default OVERLAP) of `priority` -1 or 0
    (default SIDE_PRIORITY); ramp: growing chunk sizes (default: with overlap if RAMP; see
    _chunks);
    dequant: "cuda" or "triton" (default: see dequant_backend). The result depends on the
    chunks (cuBLAS per chunk shape), not on overlap, priority or dequant."""
    sched = _schedule(a.device, overlap, priority, ramp, dequant)
    if _fp8_ok(b.shape[0], mode):
        a8, a_scale = fp8.quantize_rows(a)
        return _fp8_chunked(a8, a_scale, b, b_scale, b_alpha, scale_layout, out_dtype, bias,
                            workspace, sched)
    return _chunked(a, b, b_scale, b_alpha, scale_layout, a.dtype, out_dtype, bias, workspace,
                    sched)


def gemm(a, b, a_scale, b_scale, alpha, out_dtype, bias, *, workspace=WORKSPACE_BYTES,
         mode=None, overlap=None, priority=None, ramp=None, dequant=None):
    """NVFP4 a [M, K/2] x NVFP4 b [N, K/2] (swizzled scales) -> [M, N], as gemm.gemm.
    Keywords as gemm_w4a16."""
    sched = _schedule(a.device, overlap, priority, ramp, dequant)
    if _fp8_ok(b.shape[0], mode):
        fold = torch.full((1,), _FP8_FOLD, dtype=torch.float32, device=a.device)
        a8 = _dequantize_scaled(sched.dequant, a, a_scale, fold, "swizzled",
                                torch.float8_e4m3fn)
        a_rows = torch.full((a.shape[0], 1), 1.0 / _FP8_FOLD, dtype=torch.float32,
                            device=a.device)
        return _fp8_chunked(a8, a_rows, b, b_scale, alpha, "swizzled", out_dtype, bias,
                            workspace, sched)
    one = torch.ones(1, dtype=torch.float32, device=a.device)
    a_hat = _dequantize_scaled(sched.dequant, a, a_scale, one, "swizzled",
                               torch.bfloat16)  # lut * s, exact
    return _chunked(a_hat, b, b_scale, alpha, "swizzled", torch.bfloat16, out_dtype, bias,
                    workspace, sched)


__all__ = ["DEQUANT_BACKENDS", "MODES", "MODE_ENV", "OVERLAP", "RAMP", "RAMP_FIRST",
           "SIDE_PRIORITY", "WORKSPACE_BYTES", "chunk_rows", "clear_mode", "dequant_backend",
           "gemm", "gemm_w4a16", "mode", "takes", "workspace_bytes"]
