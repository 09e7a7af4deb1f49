#!/usr/bin/env python3
"""Train the two small language models under Tests/Fixtures/models/trained-*.

The random-weight fixtures of tools/make_fixtures.py say nothing about quality: every
pruning choice leaves them equally useless. These two models are trained for a few
minutes on real English, so a held-out perplexity separates a careful trim from a
careless one.

Corpus: the text of CPython's ``pydoc_data.topics`` (the help() topics: the language
reference in prose), the values joined in sorted key order. The last topics, the
smallest tail holding at least 10 % of the characters, are held out; the model and the
tokenizer never see them. The corpus comes from the interpreter, not the network, so
the script pins its sha256 and stops if another Python ships different text.

Tokenizer: a byte-level BPE of 2048 entries (``<|endoftext|>`` included) trained with
the ``tokenizers`` package on the training topics only. Topics are tokenized one by
one and joined with ``<|endoftext|>``.

Models (built from config objects, ``torch.manual_seed(0)``):
  trained-llama   LlamaForCausalLM: hidden 128, 4 layers, 4 query heads, 2 key/value
                  heads (head_dim 32), MLP 384, tied embeddings.
  trained-moe     MixtralForCausalLM: hidden 128, 3 layers, 4 query heads, 2 key/value
                  heads, 4 experts of 192 channels, top-2, tied embeddings. Trained with
                  the router's load-balancing loss, so that every expert gets work; the
                  saved config turns router logits off again, so a forward pass with
                  labels returns the plain language-model loss.
Training: f32 on the CPU, AdamW (peak lr 2e-3, warmup then cosine decay to 10 %, weight
decay 0.1 on matrices, gradient clipping 1.0), 500 steps, batches of 16 windows of 128
tokens at offsets drawn from a seeded generator, attention dropout 0.1 (the corpus is
small: without it the models learn the training text by heart after a few hundred steps
and the held-out perplexity climbs again). The held-out loss printed every 50 steps is
for watching: the script picks nothing from it, but the step count, learning rate and
dropout above were set by hand while watching it, so the reported held-out perplexity is
a little optimistic. The weights
are saved in bf16 (``save_pretrained(safe_serialization=True)``), which keeps each
folder under 4 MB.

Each model folder gets config.json, generation_config.json, model.safetensors,
tokenizer.json, tokenizer_config.json and a README.md. The held-out tokens go NEXT TO
the model folders, in Tests/Fixtures/heldout/<name>.safetensors (``input_ids``, int64
[16, 128]: the first 16 consecutive 128-token windows of the held-out text) and
<name>.jsonl (the same windows, one JSON list per line). They cannot live inside the
model folder: pare reads every top-level *.safetensors of a folder as model weights and
refuses a folder with two of them and no index.

Checks: after saving, each model is reloaded with ``AutoModelForCausalLM`` in f32 and
its held-out perplexity (exp of the mean over the windows of the loss with
``labels=input_ids``) must be finite and below vocab_size / 8; the script also trains
the tokenizer twice and requires identical JSON, and keeps every folder under 4 MB.

Reproducibility: training runs on ONE thread (``torch.set_num_threads(1)``) with
``torch.use_deterministic_algorithms(True)``, so the result does not depend on the
machine's core count (a parallel reduction splits its sums by thread count) and the
script leaves the other cores alone; two runs on the same machine write identical bytes. Float results of CPU kernels depend on the instruction set (AVX2 vs
AVX-512) and on the library versions (tools/requirements.txt plus tokenizers), so
another machine may train slightly different weights; the tests check the properties
(perplexity, tokenizer round trip), not the bytes. Each model takes a few minutes.

Usage:  .venv/bin/python tools/train_fixtures.py [--only trained-llama|trained-moe] [--out DIR]
        (--out DIR puts the model folders in DIR and the held-out files in DIR/heldout)
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import textwrap
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModelForCausalLM,
    AutoTokenizer,
    LlamaConfig,
    LlamaForCausalLM,
    MixtralConfig,
    MixtralForCausalLM,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "Tests" / "Fixtures" / "models"
DEFAULT_HELDOUT = REPO_ROOT / "Tests" / "Fixtures" / "heldout"
DEFAULT_CALIBRATION = REPO_ROOT / "Tests" / "Fixtures" / "calibration"

# The corpus as Python 3.11.7 ships it; another text would train other models.
CORPUS_SHA256 = "37d06970fc926e60c16dff401e441b84752446a36b6b64516c229fdec77e992c"
HELDOUT_FRACTION = 0.10
VOCAB_SIZE = 2048
EOS = "<|endoftext|>"
SEQ_LEN = 128
BATCH = 16
HELDOUT_WINDOWS = 16
# Calibration windows for the data-aware criteria (pare calibrate): from the training text,
# at seeded random offsets, never from the held-out part they are judged on.
CALIBRATION_WINDOWS = 32
MAX_FOLDER_BYTES = 4 * 1024 * 1024
SEED = 0
COMMAND = ".venv/bin/python tools/train_fixtures.py"


# --------------------------------------------------------------------------- corpus


def corpus_topics() -> list[tuple[str, str]]:
    from pydoc_data.topics import topics

    return [(key, topics[key]) for key in sorted(topics)]


def split_topics(topics: list[tuple[str, str]]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """The held-out part is the shortest tail of topics with >= HELDOUT_FRACTION of the characters."""
    total = sum(len(text) for _, text in topics)
    tail = 0
    cut = len(topics)
    while cut > 0 and tail < HELDOUT_FRACTION * total:
        cut -= 1
        tail += len(topics[cut][1])
    return topics[:cut], topics[cut:]


# --------------------------------------------------------------------------- tokenizer


def train_tokenizer(texts: list[str]) -> Tokenizer:
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer)
    return tok


def token_stream(tok: Tokenizer, texts: list[str]) -> torch.Tensor:
    """Every text tokenized on its own, followed by <|endoftext|>."""
    eos = tok.token_to_id(EOS)
    ids: list[int] = []
    for text in texts:
        ids.extend(tok.encode(text).ids)
        ids.append(eos)
    return torch.tensor(ids, dtype=torch.int64)


def tokenizer_config() -> dict:
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": EOS,
        "eos_token": EOS,
        "unk_token": EOS,
        "model_max_length": SEQ_LEN * 2,
        "clean_up_tokenization_spaces": False,
    }


# --------------------------------------------------------------------------- models


def llama_config(vocab: int, eos: int) -> LlamaConfig:
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=128,
        intermediate_size=384,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=SEQ_LEN * 2,
        tie_word_embeddings=True,
        attention_dropout=0.1,
        bos_token_id=eos,
        eos_token_id=eos,
    )


def moe_config(vocab: int, eos: int) -> MixtralConfig:
    return MixtralConfig(
        vocab_size=vocab,
        hidden_size=128,
        intermediate_size=192,  # per expert
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_local_experts=4,
        num_experts_per_tok=2,
        max_position_embeddings=SEQ_LEN * 2,
        tie_word_embeddings=True,
        attention_dropout=0.1,
        router_aux_loss_coef=0.02,
        bos_token_id=eos,
        eos_token_id=eos,
    )


# name -> (model class, config builder, architecture blurb for the README, steps, peak lr)
MODELS = {
    "trained-llama": (
        LlamaForCausalLM,
        llama_config,
        "LlamaForCausalLM: hidden 128, 4 layers, 4 query heads and 2 key/value heads "
        "(head_dim 32, grouped-query attention), MLP 384, tied input/output embeddings, "
        "default RoPE",
        500,
        2e-3,
    ),
    "trained-moe": (
        MixtralForCausalLM,
        moe_config,
        "MixtralForCausalLM: hidden 128, 3 layers, 4 query heads and 2 key/value heads "
        "(head_dim 32), 4 experts of 192 channels with top-2 routing, tied input/output "
        "embeddings, default RoPE. Trained with the router load-balancing loss "
        "(coefficient 0.02); the saved config has output_router_logits false",
        500,
        2e-3,
    ),
}


def lr_at(step: int, steps: int, peak: float) -> float:
    warmup = max(1, steps // 20)
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)))


@torch.no_grad()
def mean_loss(model: torch.nn.Module, windows: torch.Tensor) -> float:
    losses = [model(input_ids=w[None], labels=w[None]).loss.item() for w in windows]
    return sum(losses) / len(losses)


def train(name: str, model: torch.nn.Module, stream: torch.Tensor, windows: torch.Tensor, steps: int,
          peak_lr: float) -> float:
    moe = isinstance(model, MixtralForCausalLM)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
        lr=peak_lr,
        betas=(0.9, 0.95),
    )
    gen = torch.Generator().manual_seed(SEED)
    starts_max = len(stream) - SEQ_LEN
    model.train()
    start = time.monotonic()
    running = 0.0
    last = float("nan")  # mean training loss over the last 50 steps
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, steps, peak_lr)
        starts = torch.randint(0, starts_max + 1, (BATCH,), generator=gen)
        batch = torch.stack([stream[s : s + SEQ_LEN] for s in starts.tolist()])
        kwargs = {"output_router_logits": True} if moe else {}
        out = model(input_ids=batch, labels=batch, **kwargs)
        opt.zero_grad(set_to_none=True)
        out.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        lm_loss = out.loss.item() - (model.config.router_aux_loss_coef * out.aux_loss.item() if moe else 0.0)
        running += lm_loss
        if (step + 1) % 50 == 0 or step == 0:
            n = 1 if step == 0 else 50
            model.eval()
            held = mean_loss(model, windows)
            model.train()
            print(
                f"{name}: step {step + 1:4d}/{steps}  train loss {running / n:.3f}  "
                f"held-out loss {held:.3f}  lr {opt.param_groups[0]['lr']:.2e}  {time.monotonic() - start:6.1f}s",
                flush=True,
            )
            last = running / n
            running = 0.0
    model.eval()
    return last


# --------------------------------------------------------------------------- evaluation


@torch.no_grad()
def heldout_perplexity(folder: Path, windows: torch.Tensor) -> float:
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)
    model.eval()
    return math.exp(mean_loss(model, windows))


# --------------------------------------------------------------------------- writing


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def write_heldout(windows: torch.Tensor, heldout_dir: Path, name: str) -> None:
    heldout_dir.mkdir(parents=True, exist_ok=True)
    save_file({"input_ids": windows.contiguous()}, str(heldout_dir / f"{name}.safetensors"))
    lines = "".join(json.dumps(row) + "\n" for row in windows.tolist())
    (heldout_dir / f"{name}.jsonl").write_text(lines, encoding="utf-8")


def calibration_windows(stream: torch.Tensor) -> torch.Tensor:
    """CALIBRATION_WINDOWS windows of SEQ_LEN tokens of the training stream at seeded offsets."""
    generator = torch.Generator().manual_seed(SEED + 1)
    starts = torch.randint(0, len(stream) - SEQ_LEN, (CALIBRATION_WINDOWS,), generator=generator)
    return torch.stack([stream[s : s + SEQ_LEN] for s in starts.tolist()]).contiguous()


def write_calibration(windows: torch.Tensor, directory: Path, name: str) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    save_file({"input_ids": windows}, str(directory / f"{name}.safetensors"))


def readme(name: str, blurb: str, steps: int, lr: float, n_params: int, split, train_tokens: int,
           heldout_tokens: int, train_loss: float, ppl: float, vocab: int) -> str:
    train_topics, heldout_topics = split
    architecture = textwrap.fill(
        f"- Architecture: {blurb}. {n_params:,} parameters, saved in bf16 (trained in f32).",
        width=88, subsequent_indent="  ", break_on_hyphens=False,
    )
    return f"""\
# {name} (test fixture)

A small language model TRAINED on English text, unlike the random-weight fixtures beside
it, so that the held-out perplexity says how much a trim or a sparsification costs.
Made by `tools/train_fixtures.py`:

    {COMMAND} --only {name}

{architecture}
- Tokenizer: byte-level BPE, vocabulary {vocab} (`<|endoftext|>` = id 0, also bos/eos),
  trained by the script on the training text only; `tokenizer.json` and
  `tokenizer_config.json` load with `AutoTokenizer.from_pretrained(this folder)`.
- Training text: CPython's `pydoc_data.topics` (the help() topics, Python 3.11.7),
  topics in sorted key order, each followed by `<|endoftext|>`: the first
  {len(train_topics)} topics ({train_tokens:,} tokens). Held out: the last {len(heldout_topics)}
  (`{heldout_topics[0][0]}` .. `{heldout_topics[-1][0]}`, {heldout_tokens:,} tokens), never seen by
  the model or the tokenizer.
- Training: {steps} AdamW steps (peak lr {lr:g}, warmup then cosine decay to 10 %,
  weight decay 0.1 on matrices, gradient clipping 1.0), batches of {BATCH} windows of
  {SEQ_LEN} tokens at seeded random offsets, attention dropout 0.1 (kept in config.json;
  inactive in eval mode), one CPU thread, `torch.manual_seed({SEED})`. Mean training
  loss over the last 50 steps: {train_loss:.3f}.
- Held-out perplexity measured by transformers {transformers.__version__}
  (`AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32)`, loss with
  `labels=input_ids` per window, mean over the windows, exp): **{ppl:.2f}** on the
  {HELDOUT_WINDOWS} windows of {SEQ_LEN} tokens in `Tests/Fixtures/heldout/{name}.safetensors`
  (`input_ids`, int64 [{HELDOUT_WINDOWS}, {SEQ_LEN}]) and `Tests/Fixtures/heldout/{name}.jsonl`
  (the same windows, one JSON list per line). A uniform guess scores the vocabulary
  size, {vocab}.

The held-out files are kept outside this folder because pare reads every top-level
`*.safetensors` of a model folder as weights.
"""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None,
                        help=f"output root for the model folders (default: {DEFAULT_OUT}); "
                             "the held-out files go to OUT/heldout")
    parser.add_argument("--only", choices=list(MODELS), help="train only this model (default: both)")
    parser.add_argument("--calibration-only", action="store_true",
                        help="write only the calibration windows (Tests/Fixtures/calibration), training nothing")
    args = parser.parse_args()
    out: Path = args.out if args.out is not None else DEFAULT_OUT
    heldout_dir = DEFAULT_HELDOUT if args.out is None else args.out / "heldout"
    wanted = [args.only] if args.only else list(MODELS)

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, "
          f"transformers {transformers.__version__}", file=sys.stderr)

    topics = corpus_topics()
    digest = hashlib.sha256("".join(text for _, text in topics).encode("utf-8")).hexdigest()
    if digest != CORPUS_SHA256:
        print(f"error: pydoc_data.topics of this Python has sha256 {digest}, not {CORPUS_SHA256} "
              "(the text of Python 3.11.7); the models would not be the committed ones", file=sys.stderr)
        return 1
    train_topics, heldout_topics = split_topics(topics)
    train_texts = [text for _, text in train_topics]

    tok = train_tokenizer(train_texts)
    tok_json = tok.to_str()
    assert train_tokenizer(train_texts).to_str() == tok_json, "BPE training is not deterministic"
    vocab = tok.get_vocab_size()
    eos = tok.token_to_id(EOS)
    assert vocab == VOCAB_SIZE and eos == 0, (vocab, eos)

    stream = token_stream(tok, train_texts)
    heldout_stream = token_stream(tok, [text for _, text in heldout_topics])
    assert len(heldout_stream) >= HELDOUT_WINDOWS * SEQ_LEN
    windows = heldout_stream[: HELDOUT_WINDOWS * SEQ_LEN].reshape(HELDOUT_WINDOWS, SEQ_LEN).clone()
    print(f"corpus: {len(train_topics)} training topics, {len(stream):,} tokens; "
          f"{len(heldout_topics)} held-out topics, {len(heldout_stream):,} tokens", file=sys.stderr)
    calibration_dir = DEFAULT_CALIBRATION if args.out is None else args.out / "calibration"
    calibration = calibration_windows(stream)
    for name in wanted:
        write_calibration(calibration, calibration_dir, name)
    if args.calibration_only:
        print(f"wrote {CALIBRATION_WINDOWS} calibration windows of {SEQ_LEN} tokens to {calibration_dir}", file=sys.stderr)
        return 0

    ok = True
    for name in wanted:
        model_cls, make_config, blurb, steps, lr = MODELS[name]
        torch.manual_seed(SEED)
        model = model_cls(make_config(vocab, eos))
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {n_params:,} parameters, {steps} steps", flush=True)
        t0 = time.monotonic()
        train_loss = train(name, model, stream, windows, steps, lr)
        seconds = time.monotonic() - t0

        folder = out / name
        if folder.exists():
            shutil.rmtree(folder)
        folder.mkdir(parents=True)
        model.config.output_router_logits = False
        model = model.to(torch.bfloat16)
        model.config.dtype = torch.bfloat16
        model.save_pretrained(folder, safe_serialization=True)
        (folder / "tokenizer.json").write_text(tok_json, encoding="utf-8")
        (folder / "tokenizer_config.json").write_text(json.dumps(tokenizer_config(), indent=2) + "\n",
                                                      encoding="utf-8")
        write_heldout(windows, heldout_dir, name)

        ppl = heldout_perplexity(folder, windows)
        (folder / "README.md").write_text(
            readme(name, blurb, steps, lr, n_params, (train_topics, heldout_topics), len(stream),
                   len(heldout_stream), train_loss, ppl, vocab),
            encoding="utf-8",
        )
        # The tokenizer as transformers loads it must agree with the one trained here.
        hf_tok = AutoTokenizer.from_pretrained(folder)
        sample = heldout_topics[0][1][:400]
        assert hf_tok(sample)["input_ids"] == tok.encode(sample).ids
        assert hf_tok.decode(hf_tok(sample)["input_ids"]) == sample

        size = folder_bytes(folder)
        good = math.isfinite(ppl) and ppl < vocab / 8 and size <= MAX_FOLDER_BYTES
        ok = ok and good
        print(f"{name}: trained in {seconds:.0f}s, train loss {train_loss:.3f} (last 50 steps), "
              f"held-out perplexity {ppl:.2f} (uniform {vocab}), folder {size:,} bytes"
              f"{'' if good else '  <-- FAILED (perplexity >= vocab/8 or folder > 4 MB)'}", flush=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
