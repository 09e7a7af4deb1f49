#!/usr/bin/env python3
"""Does a criterion's win hold across independently trained models? The quality table
(tools/bench/quality_table.py) measures each criterion once, on one trained model per
family; a row whose choices differ by a few percent can be decided by that one model's
draw. This study trains several models of the same shapes from different initial seeds
and measures the Llama rows on each.

    .venv/bin/python tools/bench/seed_study.py [--seeds 0 1 2 3 4] [--shapes 4x2 8x2]
                                               [--random 5] [--pare PATH] [--work DIR]
                                               [--jobs 2] [--markdown]

Models: for every shape HxKV and seed S, a LlamaForCausalLM trained by
tools/train_fixtures.py's own code (same corpus, tokenizer, calibration and held-out
windows, optimiser, 500 steps, data order) with `torch.manual_seed(S)` before the weights
are drawn, H query heads and KV key/value heads at head_dim 128 / H, everything else the
`trained-llama` fixture's (4x2 with seed 0 is that fixture, retrained). Saved in bf16 as
WORK/models/llama-HxKV-sS with WORK/calibration/ and WORK/heldout/ beside them. Training
runs on one thread per job (--jobs at a time), about 2 minutes a model.

Measured on each model, as the quality table does (`pare calibrate`, `pare trim`, `pare
eval --json` on the held-out windows, random = --random seeded keep lists of the same
sizes): FFN 50 %, query heads 50 %, kv heads 50 %, drop 1 of 4 layers.

For the query-heads row, three more choices are computed with torch on the calibration
windows and measured the same way (the heads masked at o_proj's input, which is what
removing them computes; perplexity by transformers on the held-out windows):
  ablation        each head's own cost: the calibration loss with that head alone masked;
                  keep the costliest within each kv group.
  reconstruction  per layer, the kept set (the same count in every kv group) whose removed
                  heads' summed contribution W_o,h a_h has the least energy over the
                  calibration tokens (NAEE's reconstruction loss applied to heads; the
                  subsets are enumerated).
  magnitude       pare's choice, re-measured with the torch mask as a cross-check of the
                  two paths (the script stops if they differ by more than 1e-6 relative).

Output: per row and criterion, the mean over the models, and the wins-ties-losses of each
model's data-aware choice against magnitude (last, for the layer drop) and against that
model's random mean (a tie is the same keep lists; no count against random for the layer
drop, where 5 draws among 4 layers say little); then every model's numbers. Runtime: about 10 minutes of training
on 2 cores for the default 10 models (reused from --work when there), then about 5
minutes of measuring.
"""
from __future__ import annotations

import argparse
import hashlib
import itertools
import json
import math
import os
import shutil
import sys
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(REPO, "tools"))
from quality_table import Pare, measure_model  # noqa: E402

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROWS = ["ffn", "heads", "kv_heads", "depth"]


# --------------------------------------------------------------------------- training


def train_one(work: str, heads: int, kv: int, seed: int) -> str:
    """Train one model into WORK (models/, calibration/, heldout/); returns its name."""
    import torch
    import train_fixtures as tf
    import transformers

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    name = f"llama-{heads}x{kv}-s{seed}"
    folder = os.path.join(work, "models", name)
    _, _, _, steps, lr = tf.MODELS["trained-llama"]
    topics = tf.corpus_topics()
    digest = hashlib.sha256("".join(text for _, text in topics).encode("utf-8")).hexdigest()
    if digest != tf.CORPUS_SHA256:
        raise SystemExit(f"pydoc_data.topics of this Python has sha256 {digest}, not the fixtures' "
                         f"{tf.CORPUS_SHA256}: the models would not be trained-llama's recipe")
    recipe = {"heads": heads, "kv_heads": kv, "seed": seed, "corpus_sha256": digest, "steps": steps, "lr": lr,
              "torch": torch.__version__, "transformers": transformers.__version__}
    marker = os.path.join(folder, "seed-study.json")
    if os.path.exists(marker):
        with open(marker) as f:
            if json.load(f) == recipe:
                return name
        raise SystemExit(f"{folder} was trained with another recipe ({marker}); remove it or use another --work")
    train_topics, heldout_topics = tf.split_topics(topics)
    tok = tf.train_tokenizer([t for _, t in train_topics])
    stream = tf.token_stream(tok, [t for _, t in train_topics])
    held = tf.token_stream(tok, [t for _, t in heldout_topics])
    windows = held[: tf.HELDOUT_WINDOWS * tf.SEQ_LEN].reshape(tf.HELDOUT_WINDOWS, tf.SEQ_LEN).clone()
    vocab, eos = tok.get_vocab_size(), tok.token_to_id(tf.EOS)
    assert vocab == tf.VOCAB_SIZE and eos == 0, (vocab, eos)
    config = tf.llama_config(vocab, eos)
    config.num_attention_heads, config.num_key_value_heads = heads, kv
    config.head_dim = config.hidden_size // heads
    torch.manual_seed(seed)
    model = transformers.LlamaForCausalLM(config)
    with open(os.devnull, "w") as quiet:  # the trainer prints its progress every 50 steps
        stdout, sys.stdout = sys.stdout, quiet
        try:
            tf.train(name, model, stream, windows, steps, lr)
        finally:
            sys.stdout = stdout
    model = model.to(torch.bfloat16)
    model.config.dtype = torch.bfloat16
    staging = folder + ".partial"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging, safe_serialization=True)
    tf.write_heldout(windows, Path(work, "heldout"), name)
    tf.write_calibration(tf.calibration_windows(stream), Path(work, "calibration"), name)
    with open(os.path.join(staging, "seed-study.json"), "w") as f:
        json.dump(recipe, f)
    shutil.rmtree(folder, ignore_errors=True)
    os.replace(staging, folder)
    print(f"trained {name}", file=sys.stderr, flush=True)
    return name


# --------------------------------------------------------------------------- torch choices


def torch_head_choices(work: str, name: str, magnitude_plan: dict) -> dict:
    """For the ablation and reconstruction head choices and pare's magnitude choice: the
    held-out perplexity under torch masking and the kept heads per layer."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(1)
    model = AutoModelForCausalLM.from_pretrained(os.path.join(work, "models", name), dtype=torch.float32).eval()
    calib = load_file(os.path.join(work, "calibration", f"{name}.safetensors"))["input_ids"]
    heldout = load_file(os.path.join(work, "heldout", f"{name}.safetensors"))["input_ids"]
    cfg = model.config
    H, KV, L = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.num_hidden_layers
    hd, group = cfg.head_dim, H // KV
    layers = model.model.layers
    keep_per = len(magnitude_plan["attention"]["0"]["query_heads"][0])

    @torch.no_grad()
    def mean_loss(windows, masks: dict) -> float:
        hooks = [layers[l].self_attn.o_proj.register_forward_pre_hook(lambda m, a, k=k: (a[0] * k,))
                 for l, k in masks.items()]
        try:
            return sum(model(input_ids=w[None], labels=w[None]).loss.item() for w in windows) / len(windows)
        finally:
            for h in hooks:
                h.remove()

    def mask(heads_kept) -> torch.Tensor:
        m = torch.zeros(H * hd)
        for h in heads_kept:
            m[h * hd:(h + 1) * hd] = 1
        return m

    def perplexity(keep: dict) -> float:
        return math.exp(mean_loss(heldout, {l: mask(k) for l, k in keep.items()}))

    # o_proj inputs on the calibration windows.
    inputs = {l: [] for l in range(L)}
    hooks = [layers[l].self_attn.o_proj.register_forward_pre_hook(
        lambda m, a, l=l: inputs[l].append(a[0][0].detach().double())) for l in range(L)]
    with torch.no_grad():
        for w in calib:
            model(input_ids=w[None])
    for h in hooks:
        h.remove()

    ablation, reconstruction = {}, {}
    for l in range(L):
        cost = [mean_loss(calib, {l: 1 - mask([h])}) for h in range(H)]
        ablation[l] = sorted(h for k in range(KV)
                             for h in sorted(range(k * group, (k + 1) * group), key=lambda h: -cost[h])[:keep_per])
        x = torch.cat(inputs[l])  # [tokens, H * hd]
        wo = layers[l].self_attn.o_proj.weight.detach().double()
        parts = [x[:, h * hd:(h + 1) * hd] @ wo[:, h * hd:(h + 1) * hd].T for h in range(H)]
        gram = torch.tensor([[float((parts[i] * parts[j]).sum()) for j in range(H)] for i in range(H)],
                            dtype=torch.float64)
        best = None
        for combo in itertools.product(*[itertools.combinations(range(k * group, (k + 1) * group), keep_per)
                                         for k in range(KV)]):
            kept = {h for c in combo for h in c}
            removed = [h for h in range(H) if h not in kept]
            energy = float(gram[removed][:, removed].sum())
            if best is None or energy < best[0]:
                best = (energy, sorted(kept))
        reconstruction[l] = best[1]

    magnitude = {int(l): [k * group + q for k, qs in zip(a["kv_heads"], a["query_heads"]) for q in qs]
                 for l, a in magnitude_plan["attention"].items()}
    return {key: {"perplexity": perplexity(keep), "keep": keep}
            for key, keep in (("ablation", ablation), ("reconstruction", reconstruction), ("magnitude", magnitude))}


# --------------------------------------------------------------------------- report


def record(ours: list[float], theirs: list[float], same: list[bool]) -> str:
    """Wins-ties-losses of `ours` against `theirs`, lower perplexity winning; a tie is the
    same keep lists (`same`), never a float comparison."""
    wins = sum(not t and a < b for a, b, t in zip(ours, theirs, same))
    ties = sum(same)
    return f"{wins}–{ties}–{len(ours) - wins - ties}"


def row_of(res: dict, key: str) -> dict:
    return next(r for r in res["rows"] if r["key"] == key)


def random_mean(row: dict) -> float:
    return sum(row["cells"]["random"]) / len(row["cells"]["random"])


LABELS = {"ffn": "FFN 50 %", "heads": "query heads 50 %", "kv_heads": "kv heads 50 %", "depth": "drop 1 of 4 layers"}


def summarise(results: list[dict], markdown: bool) -> str:
    mean = lambda xs: f"{sum(xs) / len(xs):.2f}"  # noqa: E731
    never = [False] * len(results)
    header = ["what is cut", "criterion", "mean perplexity", "against magnitude / last (W–T–L)",
              "against the random mean (W–T–L)"]
    body = []
    for key in ROWS:
        rows = [row_of(res, key) for res in results]
        mag = [r["cells"]["magnitude"] for r in rows]
        data = [r["cells"]["data"] for r in rows]
        rnd = [random_mean(r) for r in rows]
        # Five draws among four layers say little about the mean layer drop: no count there.
        vs_random = (lambda xs: "") if key == "depth" else (lambda xs: record(xs, rnd, never))  # noqa: E731
        body.append([LABELS[key], rows[0]["criteria"]["magnitude"], mean(mag), "", vs_random(mag)])
        body.append(["", rows[0]["criteria"]["data"], mean(data),
                     record(data, mag, ["data" in r["same"] for r in rows]), vs_random(data)])
        if key == "heads":
            for name in ("ablation", "reconstruction"):
                vals = [res["torch"][name]["perplexity"] for res in results]
                same = [res["torch"][name]["keep"] == res["torch"]["magnitude"]["keep"] for res in results]
                body.append(["", f"{name} (torch)", mean(vals), record(vals, mag, same), vs_random(vals)])
        body.append(["", "random", mean(rnd), "", ""])
    per_header = ["model", "untrimmed"] + [f"{LABELS[k]}: magnitude / data / random" for k in ROWS] + \
                 ["heads: ablation / reconstruction"]
    per = []
    for res in results:
        cells = [res["name"], f"{res['untrimmed']:.2f}"]
        for key in ROWS:
            r = row_of(res, key)
            cells.append(f"{r['cells']['magnitude']:.2f} / {r['cells']['data']:.2f} / {random_mean(r):.2f}")
        cells.append(f"{res['torch']['ablation']['perplexity']:.2f} / {res['torch']['reconstruction']['perplexity']:.2f}")
        per.append(cells)
    return render(header, body, markdown) + "\n\n" + render(per_header, per, markdown)


def render(header: list[str], body: list[list[str]], markdown: bool) -> str:
    if markdown:
        out = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
        return "\n".join(out + ["| " + " | ".join(r) + " |" for r in body])
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    fmt = lambda r: "  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return "\n".join([fmt(header), fmt(["-" * w for w in widths]), *map(fmt, body)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="initial seeds (default 0-4)")
    ap.add_argument("--shapes", nargs="+", default=["4x2", "8x2"], help="query x kv heads (default 4x2 8x2)")
    ap.add_argument("--random", type=int, default=5, help="random keep lists per row and model (default 5)")
    ap.add_argument("--pare", default=os.environ.get("PARE_BIN", os.path.join(REPO, ".build", "debug", "pare")))
    ap.add_argument("--work", help="keep (and reuse) the trained models and trims here")
    ap.add_argument("--jobs", type=int, default=2, help="models trained at once (default 2)")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    import train_fixtures as tf

    hidden = tf.llama_config(tf.VOCAB_SIZE, 0).hidden_size
    shapes = []
    for s in args.shapes:
        h, _, kv = s.partition("x")
        # Both head rows must be possible: --heads H/2 keeps whole groups' worth per kv head,
        # --kv-heads KV/2 keeps at least one.
        if not (h.isdigit() and kv.isdigit() and int(kv) >= 2 and int(kv) % 2 == 0
                and (int(h) // 2) % int(kv) == 0 and int(h) % 2 == 0 and hidden % int(h) == 0):
            ap.error(f"--shapes {s}: expected HxKV with KV even and at least 2, H/2 a multiple of KV, "
                     f"and H dividing the hidden size {hidden}")
        shapes.append((int(h), int(kv)))

    os.chdir(REPO)
    work = os.path.abspath(args.work) if args.work else tempfile.mkdtemp(prefix="pare-seeds.")
    os.makedirs(work, exist_ok=True)
    try:
        jobs = [(work, h, kv, seed) for h, kv in shapes for seed in args.seeds]
        with ProcessPoolExecutor(max_workers=args.jobs) as pool:
            names = list(pool.map(train_one, *zip(*jobs)))
        measure_dir = os.path.join(work, "measure")
        shutil.rmtree(measure_dir, ignore_errors=True)
        pare = Pare(os.path.abspath(args.pare), 1, measure_dir)
        results = []
        for name in names:
            res = measure_model(pare, name, args.random, False, fixtures=work, only=ROWS)
            heads = row_of(res, "heads")
            with open(os.path.join(measure_dir, name, "heads", "magnitude", "pare-trim.json")) as f:
                plan = json.load(f)["plan"]
            res["torch"] = torch_head_choices(work, name, plan)
            # Choices differ by as little as 0.1 %; the two paths agree to about 1e-7.
            ours, theirs = heads["cells"]["magnitude"], res["torch"]["magnitude"]["perplexity"]
            if abs(ours - theirs) > 1e-6 * theirs:
                sys.exit(f"{name}: pare's magnitude trim evaluates to {ours}, the torch mask of its heads to {theirs}")
            print(f"{name}: heads magnitude {ours:.2f}, activation {heads['cells']['data']:.2f}, "
                  f"ablation {res['torch']['ablation']['perplexity']:.2f}, "
                  f"reconstruction {res['torch']['reconstruction']['perplexity']:.2f}",
                  file=sys.stderr, flush=True)
            results.append(res)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)
    print(f"Held-out perplexity (lower is better) over {len(results)} trained Llama models "
          f"(shapes {' '.join(args.shapes)}, seeds {' '.join(map(str, args.seeds))}); random = mean of "
          f"{args.random} seeded keep lists per model.\n")
    print(summarise(results, args.markdown))


if __name__ == "__main__":
    main()
