#!/usr/bin/env python3
"""Reference evaluation of Hugging Face checkpoints with torch + transformers.

The yardstick the interop suite holds `pare eval` against. Written independently of
pare's Swift code: the model is loaded by transformers in float32, run in eval mode
under torch.no_grad(), and every number below is computed from its outputs with
plain torch ops (reductions in float64).

    reference_eval.py MODEL --tokens FILE [--seq-len T] [--samples N]
                      [--reference ORIGINAL] [--json] [--save OUT.safetensors]

prints the same JSON object `pare eval --json` does (minus timing), so the two can be
compared key by key.

Library:
  load(folder)                      -> transformers model (float32, eval, eager attention)
  is_encoder(folder)                -> True for bert-like encoders
  run(model, input_ids)             -> Outputs for one batch of equal-length sequences
  run_sequences(model, seqs)        -> Outputs for a list of 1-D sequences (any lengths)
  read_tokens(path)                 -> list of 1-D int64 sequences (attention_mask applied)
  windows(seqs, seq_len, samples)   -> the windows pare eval evaluates
  compare(model_out, ref_out, ...)  -> kl_mean, kl_p95, top1_agreement, cosine_mean, layers
  layer_map(folder, ref_layers)     -> reference layer index per layer, from pare-trim.json
  hidden_keep(folder)               -> kept hidden channels from pare-trim.json, or None
  evaluate(model_dir, seqs, ...)    -> the JSON-able summary pare eval reports

Definitions (the contract pare eval is tested against):
  * final hidden states (causal): the input of the LM head, i.e. after the final norm
    (captured with a forward pre-hook on model.get_output_embeddings()).
  * final hidden states (encoder): the last layer's output (last_hidden_state);
    pooled = mean over the sequence's tokens.
  * per-layer outputs: the residual stream after each block, captured by forward hooks
    on the decoder / encoder layer modules (NOT output_hidden_states, whose last
    element is after the final norm for llama-like models).
  * nll_mean: Σ over windows of Σ_t -log p(x_{t+1} | x_{≤t}) / Σ (len-1); equals
    transformers' `labels=input_ids` loss when all windows have the same length.
  * KL(ref ‖ model) per position = Σ_v p_ref(v) (log p_ref(v) - log p_model(v)), natural
    log, float64, over every position (the last of each window included).
    kl_p95 = torch.quantile(kl, 0.95, interpolation="linear").
  * top1_agreement: fraction of positions where argmax logits agree.
  * cosine_mean: mean over positions of cos(final hidden model, final hidden ref) (the
    reference's vector restricted to the kept channels when the trim pruned hidden);
    encoders: mean over sequences of cos(pooled model, pooled ref).
  * layers: [{"layer": i, "reference_layer": j, "cosine": mean over positions of
    cos(layer i output, reference layer j output)}]; j from pare-trim.json: dropped
    layers removed; a merged run [a..b] becomes one layer mapped to b (the last layer
    of the run, whose output the merged layer stands in for).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402

ENCODER_TYPES = {"bert"}


# --------------------------------------------------------------------------- loading


def config_of(folder) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())


def is_encoder(folder) -> bool:
    return config_of(folder)["model_type"] in ENCODER_TYPES


def load(folder):
    """transformers model in float32, eval mode, eager attention.
    Causal families: AutoModelForCausalLM; encoders: AutoModel (no pooler)."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    folder = str(folder)
    kwargs = {"dtype": torch.float32, "attn_implementation": "eager", "output_loading_info": True}
    if is_encoder(folder):
        model, info = transformers.AutoModel.from_pretrained(folder, add_pooling_layer=False, **kwargs)
    else:
        model, info = transformers.AutoModelForCausalLM.from_pretrained(folder, **kwargs)
    problems = {k: v for k, v in info.items() if v and k != "unexpected_keys"}
    # An encoder loaded without its head (BertForMaskedLM -> BertModel) leaves the head's
    # tensors unexpected; anything missing is a real problem.
    if not is_encoder(folder) and info.get("unexpected_keys"):
        problems["unexpected_keys"] = info["unexpected_keys"]
    if problems:
        raise RuntimeError(f"transformers reported loading problems for {folder}: {problems}")
    model.eval()
    return model


def block_modules(model) -> list:
    """The transformer blocks, in order (decoder layers / gpt2 h / bert encoder layers)."""
    base = getattr(model, "base_model", model)
    for path in ("layers", "h", "encoder.layer"):
        obj = base
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if obj is not None:
            return list(obj)
    raise RuntimeError(f"cannot find the layers of {type(model).__name__}")


# --------------------------------------------------------------------------- running


@dataclass
class Outputs:
    """Outputs of one evaluation. Per-position tensors are lists with one [T_i, ...] entry
    per sequence (float32, as transformers computed them)."""

    encoder: bool
    lengths: list[int]
    logits: list[torch.Tensor] | None  # [T_i, V] (causal)
    hidden: list[torch.Tensor]  # [T_i, H] final hidden states
    layers: list[list[torch.Tensor]]  # layers[l][i] = [T_i, H] block l output
    pooled: torch.Tensor | None = None  # [N, H] (encoders)
    nll_sum: float = 0.0  # Σ next-token NLL (float64)
    predicted: int = 0  # Σ (len - 1)
    loss: float | None = None  # transformers' labels loss (equal lengths only)
    extra: dict = field(default_factory=dict)

    @property
    def nll_mean(self) -> float | None:
        if self.encoder or self.predicted == 0:
            return None
        return self.nll_sum / self.predicted

    def stacked(self, name: str) -> torch.Tensor:
        """[N, T, ...] of an equal-length output ("logits" or "hidden")."""
        parts = getattr(self, name)
        assert len(set(self.lengths)) == 1, "stacked() needs equal-length sequences"
        return torch.stack(parts)


def _first(x):
    return x[0] if isinstance(x, (tuple, list)) else x


@torch.no_grad()
def run(model, input_ids: torch.Tensor) -> Outputs:
    """One forward pass over a batch [N, T] of equal-length sequences (no padding)."""
    input_ids = torch.as_tensor(input_ids, dtype=torch.int64)
    assert input_ids.dim() == 2 and input_ids.shape[1] > 0
    n, t = input_ids.shape
    encoder = model.config.model_type in ENCODER_TYPES
    blocks = block_modules(model)
    captured: dict[int, torch.Tensor] = {}
    handles = [
        b.register_forward_hook(lambda _m, _i, out, k=k: captured.__setitem__(k, _first(out).detach().clone()))
        for k, b in enumerate(blocks)
    ]
    head_in: list[torch.Tensor] = []
    if not encoder:
        handles.append(
            model.get_output_embeddings().register_forward_pre_hook(
                lambda _m, args: head_in.append(args[0].detach().clone())
            )
        )
    try:
        if encoder:
            out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids))
        else:
            out = model(input_ids=input_ids, attention_mask=torch.ones_like(input_ids),
                        labels=input_ids if t > 1 else None, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    layers = [[captured[k][i] for i in range(n)] for k in range(len(blocks))]
    if encoder:
        hidden = out.last_hidden_state
        return Outputs(True, [t] * n, None, list(hidden), layers, pooled=hidden.mean(dim=1))
    assert len(head_in) == 1, "the LM head ran more than once"
    logits = out.logits.float()
    logp = torch.log_softmax(logits[:, :-1].double(), dim=-1)
    nll = -logp.gather(-1, input_ids[:, 1:, None]).squeeze(-1)
    return Outputs(
        False, [t] * n, list(logits), list(head_in[0]), layers,
        nll_sum=float(nll.sum()), predicted=n * (t - 1),
        loss=float(out.loss) if out.loss is not None else None,
    )


def run_sequences(model, seqs: list[torch.Tensor]) -> Outputs:
    """Evaluates sequences of any lengths; equal-length runs go through one batched pass."""
    if not seqs:
        raise ValueError("no sequences")
    groups: dict[int, list[int]] = {}
    for i, s in enumerate(seqs):
        groups.setdefault(len(s), []).append(i)
    results: dict[int, tuple[Outputs, int]] = {}
    for length, idx in groups.items():
        o = run(model, torch.stack([torch.as_tensor(seqs[i], dtype=torch.int64) for i in idx]))
        for j, i in enumerate(idx):
            results[i] = (o, j)
    parts = [results[i] for i in range(len(seqs))]
    first = parts[0][0]
    out = Outputs(
        first.encoder, [len(s) for s in seqs],
        None if first.encoder else [o.logits[j] for o, j in parts],
        [o.hidden[j] for o, j in parts],
        [[o.layers[k][j] for o, j in parts] for k in range(len(first.layers))],
    )
    if first.encoder:
        out.pooled = torch.stack([o.pooled[j] for o, j in parts])
    else:
        for o, _ in {id(o): (o, 0) for o, _ in parts}.values():
            out.nll_sum += o.nll_sum
            out.predicted += o.predicted
        if len(groups) == 1:
            out.loss = first.loss
    return out


# --------------------------------------------------------------------------- tokens


def read_tokens(path) -> list[torch.Tensor]:
    """A tokens file: safetensors with `input_ids` [N, T] (+ optional `attention_mask`,
    whose 0 positions are removed), or JSON lines (one list of ids per line)."""
    path = Path(path)
    raw = path.read_bytes()
    if raw[:1] in (b"[", b"\n", b" ") or path.suffix in (".jsonl", ".json"):
        seqs = []
        for line in raw.decode().splitlines():
            if line.strip():
                seqs.append(torch.tensor(json.loads(line), dtype=torch.int64))
        return seqs
    from safetensors.torch import load_file

    tensors = load_file(str(path))
    ids = tensors["input_ids"].to(torch.int64)
    mask = tensors.get("attention_mask")
    if mask is None:
        return [row.clone() for row in ids]
    return [row[m.bool()].clone() for row, m in zip(ids, mask)]


def windows(seqs: list[torch.Tensor], seq_len: int | None = None, samples: int | None = None) -> list[torch.Tensor]:
    out = []
    for s in seqs:
        if seq_len is None or len(s) <= seq_len:
            out.append(s)
        else:
            out.extend(s[i:i + seq_len] for i in range(0, len(s), seq_len))
    return out[:samples] if samples is not None else out


# --------------------------------------------------------------------------- comparing


def trim_record(folder) -> dict | None:
    p = Path(folder) / "pare-trim.json"
    return json.loads(p.read_text()) if p.is_file() else None


def layer_map(folder, ref_layers: int, model_layers: int | None = None) -> list[int]:
    """Reference layer index of each of the model's layers (pare-trim.json's plan:
    merges first, each run [a..b] kept as one layer mapped to b; then dropped layers go)."""
    record = trim_record(folder)
    if record is None:
        if model_layers is not None and model_layers != ref_layers:
            raise ValueError(f"{model_layers} layers vs {ref_layers} and no pare-trim.json to map them")
        return list(range(ref_layers))
    plan = record["plan"]
    gone: set[int] = set()
    target = {i: i for i in range(ref_layers)}
    for run_ in plan.get("merge", []):
        layers = sorted(run_["layers"])
        target[layers[0]] = layers[-1]
        gone.update(layers[1:])
    gone.update(plan.get("drop_layers", []))
    return [target[i] for i in range(ref_layers) if i not in gone]


def hidden_keep(folder) -> list[int] | None:
    record = trim_record(folder)
    keep = record["plan"].get("hidden") if record else None
    return sorted(keep) if keep else None


def _cos(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Row-wise cosine in float64 of [..., H] tensors."""
    a, b = a.double(), b.double()
    return (a * b).sum(-1) / (a.norm(dim=-1) * b.norm(dim=-1))


def kl_per_position(model_logits: torch.Tensor, ref_logits: torch.Tensor) -> torch.Tensor:
    """KL(ref ‖ model) for each row of [P, V] logits, float64, natural log."""
    lq = torch.log_softmax(model_logits.double(), dim=-1)
    lp = torch.log_softmax(ref_logits.double(), dim=-1)
    return (lp.exp() * (lp - lq)).sum(-1)


def compare(model_out: Outputs, ref_out: Outputs, mapping: list[int] | None = None,
            keep: list[int] | None = None) -> dict:
    """kl_mean, kl_p95, top1_agreement, cosine_mean and per-layer cosines of model vs reference."""
    assert model_out.lengths == ref_out.lengths, "model and reference saw different windows"
    idx = torch.tensor(keep) if keep is not None else None

    def sel(t):
        return t.index_select(-1, idx) if idx is not None else t

    res: dict = {}
    if model_out.encoder:
        res.update(kl_mean=None, kl_p95=None, top1_agreement=None)
        res["cosine_mean"] = float(_cos(model_out.pooled, sel(ref_out.pooled)).mean())
    else:
        ml, rl = torch.cat(model_out.logits), torch.cat(ref_out.logits)
        kl = kl_per_position(ml, rl)
        res["kl_mean"] = float(kl.mean())
        res["kl_p95"] = float(torch.quantile(kl, 0.95, interpolation="linear"))
        res["top1_agreement"] = float((ml.argmax(-1) == rl.argmax(-1)).double().mean())
        res["cosine_mean"] = float(_cos(torch.cat(model_out.hidden), sel(torch.cat(ref_out.hidden))).mean())
        res["kl"] = kl
    if mapping is None:
        mapping = list(range(len(model_out.layers)))
    assert len(mapping) == len(model_out.layers), f"{len(model_out.layers)} layers, mapping {mapping}"
    res["layers"] = [
        {"layer": i, "reference_layer": j,
         "cosine": float(_cos(torch.cat(model_out.layers[i]), sel(torch.cat(ref_out.layers[j]))).mean())}
        for i, j in enumerate(mapping)
    ]
    return res


# --------------------------------------------------------------------------- summary


def evaluate(model_dir, seqs: list[torch.Tensor], reference: str | None = None, model=None, ref_model=None) -> tuple[dict, Outputs]:
    """The summary `pare eval --json` reports (without timings), and the raw outputs."""
    model = model if model is not None else load(model_dir)
    out = run_sequences(model, seqs)
    cfg = config_of(model_dir)
    summary = {
        "model": str(model_dir),
        "family": cfg["model_type"],
        "sequences": len(seqs),
        "tokens": sum(out.lengths),
        "predicted_tokens": 0 if out.encoder else out.predicted,
        "nll_mean": out.nll_mean,
        "perplexity": None if out.nll_mean is None else math.exp(out.nll_mean),
    }
    if reference is not None:
        ref_model = ref_model if ref_model is not None else load(reference)
        ref = run_sequences(ref_model, seqs)
        mapping = layer_map(model_dir, len(ref.layers), len(out.layers))
        cmp = compare(out, ref, mapping, hidden_keep(model_dir))
        cmp.pop("kl", None)
        summary.update(cmp)
    return summary, out


def _padded(parts: list[torch.Tensor]) -> torch.Tensor:
    """[N, max T, ...] with zeros after each shorter sequence."""
    t = max(p.shape[0] for p in parts)
    out = torch.zeros((len(parts), t, *parts[0].shape[1:]), dtype=torch.float32)
    for i, p in enumerate(parts):
        out[i, : p.shape[0]] = p
    return out


def save(out: Outputs, path) -> None:
    """F32 tensors: hidden_states [N, T, H], and logits [N, T, V] (causal) or pooled [N, H]."""
    from safetensors.torch import save_file

    tensors = {"hidden_states": _padded(out.hidden)}
    if out.encoder:
        tensors["pooled"] = out.pooled.float().contiguous()
    else:
        tensors["logits"] = _padded(out.logits)
    save_file(tensors, str(path))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--tokens", required=True)
    ap.add_argument("--seq-len", type=int)
    ap.add_argument("--samples", type=int)
    ap.add_argument("--reference")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    seqs = windows(read_tokens(args.tokens), args.seq_len, args.samples)
    summary, out = evaluate(args.model, seqs, args.reference)
    if args.save:
        save(out, args.save)
    if args.json:
        print(json.dumps(summary))
    else:
        for k, v in summary.items():
            if k != "layers":
                print(f"{k}: {v}")
        for row in summary.get("layers", []):
            print(f"layer {row['layer']} (reference {row['reference_layer']}): cosine {row['cosine']:.6f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
