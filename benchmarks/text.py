"""Lesson 14's text-to-digit U-Net (data/checkpoints/text_unet): what the captions control.

    python benchmarks/text.py            # writes benchmarks/text.md and text.json (≈ 2 min on one CPU thread)
    python benchmarks/text.py --quick    # a few images per row, to a temporary folder (a smoke test)

Every sample is DDIM (20 steps, η = 0, x̂_0 clipped to [−1, 1]) of the guided prediction
ε(∅) + w (ε(c) − ε(∅)), seeded per row.

1. Digit accuracy against the guidance scale w: captions "a <digit word>" (n per digit), scored by the
   lesson-05 classifier (`minidiff.eval.classifier`).
2. Attribute control at w = 3: for each attribute (thickness = ink mass, slant = μ_11/μ_02, size = ink
   spread; `minidiff.text.measure_attributes`), "a thick <digit>" against "a thin <digit>" for the digits
   other than the held-out 3, the same digits on both sides; the shift of the mean measurement, its 95 %
   interval and a permutation p-value (`minidiff.text.shift_test`), next to the same shift between the top
   and bottom terciles of the MNIST test digits (the size of the effect in the data the words were made from).
3. The held-out composition: the checkpoint never saw "thick" with a 3. "a thick three" against "a thin
   three" (ink shift and p-value), and the classifier's accuracy on "a thick three".
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from minidiff.checkpoints import load_checkpoint, read_card, update_card  # noqa: E402
from minidiff.crossattn import TextUNet, text_sample  # noqa: E402
from minidiff.data.mnist import mnist_images  # noqa: E402
from minidiff.eval.classifier import load_classifier, predict  # noqa: E402
from minidiff.schedules import NoiseSchedule  # noqa: E402
from minidiff.text import ATTRIBUTES, DIGIT_WORDS, Tokenizer, attribute_levels, check_tokenizer, measure_attributes, shift_test  # noqa: E402

SCALES = [0.0, 1.0, 2.0, 3.0, 5.0]
ATTR_W = 3.0
HOLDOUT = 3


def load(name="text_unet"):
    card = read_card(name)
    tok = check_tokenizer(card, Tokenizer(tuple(card["tokenizer"]["vocab"]), card["tokenizer"]["context_length"]))
    net = load_checkpoint(name, TextUNet)
    return net, tok, card


def sample(net, tok, schedule, captions, w, seed):
    return text_sample(schedule, net, tok, captions, w=w, steps=20, generator=torch.Generator().manual_seed(seed))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n", type=int, default=None, help="images per digit and row (default 6; --quick: 2)")
    p.add_argument("--out", default=None, help="folder for text.md and text.json (default: benchmarks/)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    n = args.n or (2 if args.quick else 6)
    out_dir = Path(args.out) if args.out else Path(__file__).parent
    net, tok, card = load()
    clf = load_classifier()
    schedule = NoiseSchedule.make(card["schedule"]["name"], card["schedule"]["T"])
    t0 = time.perf_counter()
    res = {"n_per_digit": n, "checkpoint_sha256": card["sha256"], "accuracy": {}, "attributes": {}, "holdout": {}}

    # 1. accuracy against w
    digits = torch.arange(10).repeat_interleave(n)
    captions = [f"a {DIGIT_WORDS[d]}" if d != 8 else "an eight" for d in digits.tolist()]
    for i, w in enumerate(SCALES):
        x = sample(net, tok, schedule, captions, w, seed=100 + i)
        res["accuracy"][str(w)] = (predict(clf, x) == digits).float().mean().item()
        print(f"w = {w}: accuracy {res['accuracy'][str(w)]:.3f}", flush=True)

    # 2. attribute control at w = 3, against the terciles of the test set
    test_x, test_y = mnist_images("test")
    test_m = measure_attributes(test_x)
    others = torch.tensor([d for d in range(10) if d != HOLDOUT]).repeat_interleave(n)
    gen = torch.Generator().manual_seed(0)
    for j, (name, (low, high)) in enumerate(ATTRIBUTES.items()):
        m = {}
        for k, word in enumerate((low, high)):
            caps = [f"{word} {d}" for d in others.tolist()]
            x = sample(net, tok, schedule, caps, ATTR_W, seed=200 + 10 * j + k)
            m[word] = measure_attributes(x)[name]
        st = shift_test(m[high], m[low], 10000, gen)
        lv = attribute_levels(test_m[name], test_y)
        keep = test_y != HOLDOUT
        data = (test_m[name][keep & (lv > 0)].mean() - test_m[name][keep & (lv < 0)].mean()).item()
        res["attributes"][name] = {**st, "words": [high, low], "data_tercile_shift": data}
        print(f"{name}: '{high}' − '{low}' = {st['shift']:.3g} [{st['low']:.3g}, {st['high']:.3g}], p = {st['p']:.2g}; "
              f"data {data:.3g}", flush=True)

    # 3. the held-out composition
    m = {}
    threes = torch.full((10 * n,), HOLDOUT)
    for k, word in enumerate(("thin", "thick")):
        x = sample(net, tok, schedule, [f"a {word} three"] * (10 * n), ATTR_W, seed=300 + k)
        m[word] = measure_attributes(x)["thickness"]
        res["holdout"][f"accuracy_{word}"] = (predict(clf, x) == threes).float().mean().item()
    st = shift_test(m["thick"], m["thin"], 10000, gen)
    lv = attribute_levels(test_m["thickness"], test_y)
    sel = test_y == HOLDOUT
    res["holdout"].update({**st, "n": 10 * n, "data_tercile_shift":
                           (test_m["thickness"][sel & (lv > 0)].mean() - test_m["thickness"][sel & (lv < 0)].mean()).item()})
    print(f"held out: 'a thick three' − 'a thin three' ink = {st['shift']:.3g}, p = {st['p']:.2g}", flush=True)
    res["seconds"] = round(time.perf_counter() - t0)
    res["hardware"] = f"CPU ({platform.machine()}, 1 thread)"
    res["torch"] = torch.__version__

    best = max(res["accuracy"], key=res["accuracy"].get)
    lines = ["# Text to digit: what the captions control (lesson 14)", "",
             "Command: `python benchmarks/text.py` (writes this page and text.json). Checkpoint `text_unet` "
             f"(sha256 {card['sha256'][:12]}…), DDIM 20 steps, η = 0, x̂_0 clipped; {res['hardware']}, "
             f"{res['seconds']} s.", "",
             f"## Digit accuracy against the guidance scale w ({n} captions 'a <digit>' per digit, lesson-05 classifier)", "",
             "| w | " + " | ".join(res["accuracy"]) + " |", "|---" * (len(SCALES) + 1) + "|",
             "| accuracy | " + " | ".join(f"{v:.1%}" for v in res["accuracy"].values()) + " |", "",
             f"Best: {res['accuracy'][best]:.1%} at w = {best}.", "",
             f"## Attribute control at w = {ATTR_W} ('<word> <digit>', {n} per digit, digits other than {HOLDOUT})", "",
             "Shift of the measured attribute's mean between the two words, 95 % interval (Welch standard error), "
             "two-sided permutation p-value (10 000 relabellings; the smallest possible is 1/10 001), and the same "
             "shift between the top and bottom terciles of the MNIST test digits.", "",
             "| attribute (measure) | words | shift | 95 % interval | p | data: top − bottom tercile |",
             "|---|---|---|---|---|---|"]
    measures = {"thickness": "ink mass", "slant": "μ_11/μ_02", "size": "ink spread (px)"}
    for name, r in res["attributes"].items():
        lines.append(f"| {name} ({measures[name]}) | '{r['words'][0]}' − '{r['words'][1]}' | {r['shift']:.3g} | "
                     f"[{r['low']:.3g}, {r['high']:.3g}] | {r['p']:.2g} | {r['data_tercile_shift']:.3g} |")
    h = res["holdout"]
    lines += ["", f"## Held-out composition: 'a thick three' (never in training) against 'a thin three', {h['n']} each", "",
              f"Ink shift {h['shift']:.3g} [{h['low']:.3g}, {h['high']:.3g}], p = {h['p']:.2g} "
              f"(test-set threes, top − bottom tercile: {h['data_tercile_shift']:.3g}); classifier accuracy on "
              f"'a thick three' {h['accuracy_thick']:.1%}, on 'a thin three' {h['accuracy_thin']:.1%}.", ""]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "text.md").write_text("\n".join(lines))
    (out_dir / "text.json").write_text(json.dumps(res, indent=2) + "\n")
    if not args.quick and args.out is None:  # the card keeps the headline numbers
        update_card("text_unet", metrics={
            "benchmark": "benchmarks/text.md", "digit_accuracy_by_w": res["accuracy"],
            **{f"{k}_shift_p": v["p"] for k, v in res["attributes"].items()},
            "holdout_thick3_ink_shift": h["shift"], "holdout_thick3_p": h["p"]})
    print(f"wrote {out_dir / 'text.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
