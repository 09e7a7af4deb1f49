"""`pare trim --compensate bias` (FLAP's bias compensation), checked with torch alone.

For every removed input channel c of a down projection (FFN pruning) or attention output
projection (head pruning), FLAP folds the channel's mean contribution into the output bias:

    b'[o] = b[o] + Σ_{c ∈ removed} W[o, c] · input_mean[c]

with input_mean from the statistics file (`<W>.input_mean`, formats/stats.md). Where the
class has no such bias but a config switch creates it (Llama `mlp_bias` / `attention_bias`,
Qwen3 `attention_bias`), the switch is turned on and every bias it creates is written: zeros,
except the compensated one.

Nothing here uses pare's code. For each case the test
  * runs `pare calibrate` and `pare trim ... --compensate bias`,
  * builds the expected trimmed model itself: the original loaded with transformers in f32,
    the kept indices of OUT/pare-trim.json applied as row / column slices, δ computed in
    f64 from the original weights and the statistics file, the created biases zero,
  * compares (a) every tensor pare wrote with it (slices bit for bit; compensated biases
    within 1e-6 relative for f32, within 1 ulp after rounding to bf16 for the bf16 model),
    (b) transformers' load of pare's output (no missing / unexpected keys) and its logits
    (BERT: last_hidden_state) with the expected model's, within 1e-4 relative, and
    (c) config.json: exactly the original plus the size changes and the bias switch.
  * checks FLAP's defining property with forward hooks: on the calibration tokens the mean
    output of the first layer's compensated projection is the original's (its input is
    unchanged by the trim), and without `--compensate bias` it is not.
  * checks the refusals (families with neither bias nor switch, experts' FFNs, no stats).
"""

from __future__ import annotations

import copy
import json
import random
from pathlib import Path

import pytest
import torch

from conftest import (
    FIXTURES,
    REPO_ROOT,
    describe,
    expect_error,
    load_model,
    model_inputs,
    read_tensors,
    run_pare,
)

CALIB_TRAINED_LLAMA = REPO_ROOT / "Tests" / "Fixtures" / "calibration" / "trained-llama.safetensors"

F32_REL = 1e-6  # compensated biases, f32 checkpoints
LOGITS_REL = 1e-4  # transformers on pare's output vs the expected model
MEAN_REL = 1e-5  # FLAP property on f32 checkpoints


# --------------------------------------------------------------------------- running pare


def calibration_tokens(fixture: str, tmp: Path) -> Path:
    """trained-llama: the bundled calibration file. Others: 4 seeded sequences of 24 ids."""
    if fixture == "trained-llama":
        return CALIB_TRAINED_LLAMA
    vocab = read_json(FIXTURES / fixture / "config.json")["vocab_size"]
    rng = random.Random(f"compensate-{fixture}")
    path = tmp / f"{fixture}-ids.jsonl"
    with open(path, "w") as f:
        for _ in range(4):
            f.write(json.dumps([rng.randrange(3, vocab) for _ in range(24)]) + "\n")
    return path


def read_json(path) -> dict:
    return json.loads(Path(path).read_text())


_STATS_CACHE: dict[str, Path] = {}


def stats_for(fixture: str, tmp_factory) -> tuple[Path, Path]:
    """(tokens file, statistics file) of a fixture; one `pare calibrate` per session."""
    if fixture not in _STATS_CACHE:
        d = tmp_factory.mktemp(f"stats-{fixture}")
        tokens = calibration_tokens(fixture, d)
        stats = d / "stats.safetensors"
        proc = run_pare(["calibrate", FIXTURES / fixture, "--tokens", tokens, "-o", stats, "--quiet"])
        assert proc.returncode == 0, describe(proc)
        _STATS_CACHE[fixture] = (tokens, stats)
    return _STATS_CACHE[fixture]


def trim(fixture: str, out: Path, stats: Path, opts, compensate: bool = True) -> dict:
    args = ["trim", FIXTURES / fixture, out, *opts, "--stats", stats, "--quiet"]
    if compensate:
        args += ["--compensate", "bias"]
    proc = run_pare(args)
    assert proc.returncode == 0, describe(proc)
    return read_json(out / "pare-trim.json")


def load_stats(path: Path) -> dict[str, torch.Tensor]:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}


# --------------------------------------------------------------------------- families

# Where each family keeps the pieces compensation touches ({L} = layer index).
FAMILIES = {
    "llama": dict(
        layer="model.layers.{L}.",
        ffn_rows=["mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.gate_proj.bias", "mlp.up_proj.bias"],
        down="mlp.down_proj",  # weight [out, in]
        conv1d=False,
        o="self_attn.o_proj",
        q="self_attn.q_proj",
        kv=["self_attn.k_proj", "self_attn.v_proj"],
        mlp_switch="mlp_bias",
        attn_switch="attention_bias",
        ffn_key="intermediate_size",
    ),
    "gpt2": dict(
        layer="transformer.h.{L}.",
        ffn_rows=[],  # Conv1D: c_fc.weight [in, ffn] is sliced on its columns, below
        down="mlp.c_proj",  # Conv1D weight [in, out]
        conv1d=True,
        mlp_switch=None,
        ffn_key="n_inner",
    ),
    "bert": dict(
        layer="bert.encoder.layer.{L}.",
        ffn_rows=["intermediate.dense.weight", "intermediate.dense.bias"],
        down="output.dense",
        conv1d=False,
        mlp_switch=None,
        ffn_key="intermediate_size",
    ),
}
FAMILIES["qwen3"] = dict(FAMILIES["llama"], mlp_switch=None)


def family_of(cfg: dict) -> dict:
    return FAMILIES[cfg["model_type"]]


def head_channels(entry: dict, n_kv: int, group: int, head_dim: int) -> tuple[list[int], list[int]]:
    """(o_proj input / q_proj output channels, k/v output channels) kept, in plan order.
    Query head g of kv group w is channel block (w * group + g) * head_dim."""
    kv = entry.get("kv_heads", list(range(n_kv)))
    qh = entry.get("query_heads", [list(range(group))] * len(kv))
    assert len(qh) == len(kv)
    q = [(w * group + g) * head_dim + i for w, gs in zip(kv, qh) for g in gs for i in range(head_dim)]
    k = [w * head_dim + i for w in kv for i in range(head_dim)]
    return q, k


# --------------------------------------------------------------------------- the expected model


class Expected:
    """The trimmed + compensated model built from the original with torch ops."""

    def __init__(self, fixture: str, plan: dict, stats: dict[str, torch.Tensor], config_changes: dict):
        src = FIXTURES / fixture
        self.orig_cfg = read_json(src / "config.json")
        self.fam = family_of(self.orig_cfg)
        self.orig = load_model(src, torch.float32)
        osd = {k: v.detach().clone() for k, v in self.orig.state_dict().items()}

        # (c) expected config: the original plus exactly these changes
        self.cfg = dict(self.orig_cfg, **config_changes)

        n_layers = self.orig_cfg.get("num_hidden_layers", self.orig_cfg.get("n_layer"))
        sd = dict(osd)
        slices: dict[str, tuple[int, list[int]]] = {}  # name -> (dim, kept)
        self.compensated: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}  # name -> (f64 value, f64 Σ|terms|)

        def comp(prefix: str, kept: list[int], in_dim: int, conv1d: bool):
            """δ for projection `prefix` whose input channels outside `kept` are removed."""
            w = osd[prefix + ".weight"].double()
            if conv1d:
                w = w.t()  # -> [out, in]
            mean = stats[prefix + ".weight.input_mean"].double()
            assert mean.shape == (in_dim,) and w.shape[1] == in_dim
            removed = sorted(set(range(in_dim)) - set(kept))
            assert len(removed) == in_dim - len(kept) > 0
            terms = w[:, removed] * mean[removed]
            delta = terms.sum(1)
            bias_name = prefix + ".bias"
            b = osd[bias_name].double() if bias_name in osd else torch.zeros(w.shape[0], dtype=torch.float64)
            self.compensated[bias_name] = (b + delta, terms.abs().sum(1) + b.abs())

        ffn = plan.get("ffn", {})
        attn = plan.get("attention", {})
        assert set(plan) - {"version", "ffn", "attention"} == set(), f"unexpected plan axes {plan.keys()}"
        for L in range(n_layers):
            p = self.fam["layer"].format(L=L)
            if str(L) in ffn:
                kept = ffn[str(L)]
                for name in self.fam["ffn_rows"]:
                    slices[p + name] = (0, kept)
                down = p + self.fam["down"]
                if self.fam["conv1d"]:
                    slices[p + "mlp.c_fc.weight"] = (1, kept)
                    slices[p + "mlp.c_fc.bias"] = (0, kept)
                    slices[down + ".weight"] = (0, kept)
                    in_dim = osd[down + ".weight"].shape[0]
                else:
                    slices[down + ".weight"] = (1, kept)
                    in_dim = osd[down + ".weight"].shape[1]
                comp(down, kept, in_dim, self.fam["conv1d"])
            if str(L) in attn:
                H = self.orig_cfg["num_attention_heads"]
                KV = self.orig_cfg.get("num_key_value_heads", H)
                hd = self.orig_cfg["head_dim"]
                qc, kc = head_channels(attn[str(L)], KV, H // KV, hd)
                for suffix in ("weight", "bias"):
                    slices[p + self.fam["q"] + "." + suffix] = (0, qc)
                    for kvp in self.fam["kv"]:
                        slices[p + kvp + "." + suffix] = (0, kc)
                o = p + self.fam["o"]
                slices[o + ".weight"] = (1, qc)
                comp(o, qc, H * hd, False)

        # the expected module, from the expected config (so every switched-on bias exists)
        config = type(self.orig.config).from_dict(copy.deepcopy(self.cfg))
        model = type(self.orig)(config).float().eval()
        model.config._attn_implementation = self.orig.config._attn_implementation
        target = model.state_dict()
        self.created = sorted(set(target) - set(osd))
        for name, t in target.items():
            if name in self.compensated:
                v = self.compensated[name][0].float()
            elif name in osd:
                v = osd[name]
                if name in slices:
                    dim, kept = slices[name]
                    v = v.index_select(dim, torch.tensor(kept, dtype=torch.long))
            else:  # a bias the switch creates
                v = torch.zeros(t.shape)
            assert v.shape == t.shape, f"{name}: expected shape {list(t.shape)}, sliced {list(v.shape)}"
            sd[name] = v
        unsliced = set(slices) - set(target) - {n for n in slices if n.endswith(".bias")}
        assert not unsliced, f"slice rules name tensors the model lacks: {unsliced}"
        self.sd = {k: sd[k] for k in target}
        model.load_state_dict(self.sd, strict=True)
        self.model = model

    def rounded_to(self, dtypes: dict[str, torch.dtype]) -> None:
        """Store every parameter as the checkpoint would (e.g. bf16), back in f32."""
        with torch.no_grad():
            for name, p in self.model.state_dict().items():
                if name in dtypes and dtypes[name] != torch.float32:
                    p.copy_(p.to(dtypes[name]).float())


# --------------------------------------------------------------------------- comparison helpers


def ulp_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distance in units in the last place between two tensors of the same float dtype."""
    assert a.dtype == b.dtype
    ib = {torch.float32: torch.int32, torch.bfloat16: torch.int16, torch.float16: torch.int16}[a.dtype]
    bitsize = torch.finfo(a.dtype).bits

    def ordered(t):
        i = t.contiguous().view(ib).to(torch.int64)
        neg = i < 0
        # sign-magnitude -> two's complement ordering (+0 and -0 both map to 0)
        return torch.where(neg, -(i & ((1 << (bitsize - 1)) - 1)), i)

    return (ordered(a) - ordered(b)).abs()


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return float((a.double() - b.double()).abs().max() / b.double().abs().max())


ST_TO_TORCH = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


# --------------------------------------------------------------------------- cases

# (id, fixture, trim options, exactly the config.json changes pare must make)
CASES = [
    ("llama-f32-ffn", "llama-gqa-f32", ["--ffn", "0.5"], {"intermediate_size": 48, "mlp_bias": True}),
    ("llama-f32-kv1", "llama-gqa-f32", ["--kv-heads", "1"],
     {"num_attention_heads": 2, "num_key_value_heads": 1, "attention_bias": True}),
    # llama-gqa-f32: 4 query heads over 2 kv groups -> --heads 2 keeps one per group
    ("llama-f32-heads2", "llama-gqa-f32", ["--heads", "2"], {"num_attention_heads": 2, "attention_bias": True}),
    ("trained-llama-bf16-ffn", "trained-llama", ["--ffn", "0.5"], {"intermediate_size": 192, "mlp_bias": True}),
    ("gpt2-ffn", "gpt2", ["--ffn", "0.5"], {"n_inner": 96}),
    ("bert-ffn", "bert", ["--ffn", "0.5"], {"intermediate_size": 32}),
    # qwen3 has `attention_bias` (formats/qwen3.json flags, Qwen3Attention's q/k/v/o biases)
    ("qwen3-kv1", "qwen3", ["--kv-heads", "1"],
     {"num_attention_heads": 2, "num_key_value_heads": 1, "attention_bias": True}),
    ("qwen3-heads2", "qwen3", ["--heads", "2"], {"num_attention_heads": 2, "attention_bias": True}),
]


@pytest.fixture(scope="module")
def run_case(tmp_path_factory):
    cache = {}

    def get(case_id: str):
        if case_id not in cache:
            _, fixture, opts, changes = next(c for c in CASES if c[0] == case_id)
            tokens, stats_path = stats_for(fixture, tmp_path_factory)
            out = tmp_path_factory.mktemp(case_id) / "out"
            record = trim(fixture, out, stats_path, opts)
            stats = load_stats(stats_path)
            exp = Expected(fixture, record["plan"], stats, changes)
            cache[case_id] = (fixture, out, record, stats, stats_path, tokens, exp)
        return cache[case_id]

    return get


def test_gqa_fixtures_have_groups():
    """The --heads cases keep one query head per kv group: check the fixtures have 2 groups of 2."""
    for fixture in ("llama-gqa-f32", "qwen3"):
        cfg = read_json(FIXTURES / fixture / "config.json")
        assert (cfg["num_attention_heads"], cfg["num_key_value_heads"]) == (4, 2), fixture
        assert cfg["attention_bias"] is False
    assert read_json(FIXTURES / "llama-gqa-f32" / "config.json")["mlp_bias"] is False


@pytest.mark.parametrize("case_id", [c[0] for c in CASES])
def test_tensors_match_torch(case_id, run_case):
    """(a) every tensor pare wrote equals the torch-built expectation."""
    fixture, out, record, stats, _, _, exp = run_case(case_id)
    got = read_tensors(out)
    orig = read_tensors(FIXTURES / fixture)

    expected_names = set(orig) | set(exp.created)
    assert set(got) == expected_names, (
        f"missing {sorted(expected_names - set(got))}, unexpected {sorted(set(got) - expected_names)}"
    )
    # the created biases are exactly those of the switched-on config
    assert all(n.endswith(".bias") for n in exp.created)
    if exp.created:
        assert any(n in exp.compensated for n in exp.created)

    ckpt_dtype = {r.dtype for r in orig.values()}
    assert len(ckpt_dtype) == 1
    ckpt_dtype = ckpt_dtype.pop()
    worst = []
    for name, rec in got.items():
        assert rec.dtype == ckpt_dtype, f"{name}: dtype {rec.dtype}, checkpoint is {ckpt_dtype}"
        want = exp.sd[name]
        assert list(rec.shape) == list(want.shape), f"{name}: shape {rec.shape} != {list(want.shape)}"
        if name in exp.compensated:
            value, scale = exp.compensated[name]
            if rec.tensor.dtype == torch.float32:
                err = (rec.tensor.double() - value).abs()
                bound = F32_REL * value.abs()
                bad = torch.nonzero(err > bound).reshape(-1)
                worst.append((name, float((err / value.abs()).max())))
                assert bad.numel() == 0, (
                    f"{name}: {bad.numel()} of {value.numel()} values beyond {F32_REL} relative, e.g. "
                    + ", ".join(
                        f"[{i}] expected {value[i].item():.9g} pare {rec.tensor[i].item():.9g}"
                        for i in bad[:6].tolist()
                    )
                )
            else:
                ref = value.to(rec.tensor.dtype)  # f64 -> checkpoint dtype, round to nearest
                d = ulp_distance(rec.tensor, ref)
                bad = torch.nonzero(d > 1).reshape(-1)
                worst.append((name, int(d.max())))
                assert bad.numel() == 0, (
                    f"{name}: {bad.numel()} values more than 1 ulp from the expected rounding, e.g. "
                    + ", ".join(
                        f"[{i}] expected {value[i].item():.9g} (-> {ref[i].item():.9g}) pare {rec.tensor[i].item():.9g}"
                        for i in bad[:6].tolist()
                    )
                )
            # compensation must actually move the bias
            assert float((value - (orig[name].tensor.double() if name in orig else 0)).abs().max()) > 0
        elif name in exp.created:
            assert torch.count_nonzero(rec.tensor) == 0, f"{name}: a created bias must be zeros"
        else:
            # sliced or untouched: the original values, bit for bit
            want_c = want.to(rec.tensor.dtype)
            assert torch.equal(want_c.float(), want), f"{name}: expectation not representable"
            assert torch.equal(rec.tensor, want_c), (
                f"{name}: differs from the sliced original (max |Δ| "
                f"{float((rec.tensor.double() - want.double()).abs().max()):.3g})"
            )
    print(case_id, "compensated biases (rel err or ulps):", worst)


@pytest.mark.parametrize("case_id", [c[0] for c in CASES])
def test_plan_is_what_was_asked(case_id, run_case):
    """The plan pare recorded is the trim asked for (so the expectation is not vacuous),
    and the widths were chosen by activation (the default with --stats)."""
    fixture, out, record, stats, stats_path, _, exp = run_case(case_id)
    assert record["selection"]["criteria"]["widths"] == "activation"
    cfg = exp.orig_cfg
    plan = record["plan"]
    n_layers = cfg.get("num_hidden_layers", cfg.get("n_layer"))
    if "ffn" in plan:
        ffn = cfg.get("intermediate_size") or cfg.get("n_inner") or 4 * cfg["n_embd"]
        assert sorted(plan["ffn"]) == sorted(str(L) for L in range(n_layers))
        for L, kept in plan["ffn"].items():
            assert len(kept) == ffn // 2 and len(set(kept)) == len(kept)
            # Minitron activation: the top half of layers.L.mlp.channels (ties -> lower index)
            scores = stats[f"layers.{L}.mlp.channels"].double()
            order = sorted(range(ffn), key=lambda c: (-scores[c].item(), c))
            assert sorted(kept) == sorted(order[: ffn // 2]), f"layer {L}: not the activation top half"
    if "attention" in plan:
        for L, entry in plan["attention"].items():
            H, KV = cfg["num_attention_heads"], cfg["num_key_value_heads"]
            q, k = head_channels(entry, KV, H // KV, cfg["head_dim"])
            assert len(q) == exp.cfg["num_attention_heads"] * cfg["head_dim"]
            assert len(k) == exp.cfg["num_key_value_heads"] * cfg["head_dim"]
            assert len(set(q)) == len(q)
            # activation: a kv group scores the sum of its query heads; query heads are
            # ranked within their group (ties -> lower index)
            hs = stats[f"layers.{L}.attention.heads"].double().reshape(KV, H // KV)
            n_kv = exp.cfg["num_key_value_heads"]
            groups = sorted(range(KV), key=lambda w: (-hs[w].sum().item(), w))[:n_kv]
            kv = entry.get("kv_heads", list(range(KV)))
            assert sorted(kv) == sorted(groups), f"layer {L}: kv groups {kv}, activation says {groups}"
            per = exp.cfg["num_attention_heads"] // n_kv
            for w, gs in zip(kv, entry.get("query_heads", [list(range(H // KV))] * len(kv))):
                best = sorted(range(H // KV), key=lambda g: (-hs[w, g].item(), g))[:per]
                assert sorted(gs) == sorted(best), f"layer {L} group {w}: heads {gs}, activation says {best}"


@pytest.mark.parametrize("case_id", [c[0] for c in CASES])
def test_config(case_id, run_case):
    """(c) config.json: the original plus exactly the size changes and the bias switch."""
    fixture, out, record, *_ , exp = run_case(case_id)
    got = read_json(out / "config.json")
    assert got == exp.cfg, {
        k: (exp.orig_cfg.get(k, "<absent>"), got.get(k, "<absent>"))
        for k in set(got) | set(exp.cfg)
        if got.get(k, "<absent>") != exp.cfg.get(k, "<absent>")
    }
    if fixture in ("gpt2", "bert"):
        # they already have the biases: no switch may appear
        assert set(got) == set(exp.orig_cfg)


@pytest.mark.parametrize("case_id", [c[0] for c in CASES])
def test_transformers_agrees(case_id, run_case):
    """(b) transformers loads pare's output as is and computes what the expected model does."""
    fixture, out, record, *_, exp = run_case(case_id)
    got_tensors = read_tensors(out)
    # the expected model as stored in the checkpoint's dtype (bf16: the rounded biases)
    exp.rounded_to({n: ST_TO_TORCH[r.dtype] for n, r in got_tensors.items()})

    pare_model = load_model(out, torch.float32)  # asserts no missing / unexpected / mismatched keys
    inputs = model_inputs(pare_model.config)
    with torch.no_grad():
        if fixture == "bert":
            from transformers import AutoModel

            base, info = AutoModel.from_pretrained(str(out), output_loading_info=True, dtype=torch.float32)
            _, info_orig = AutoModel.from_pretrained(
                str(FIXTURES / fixture), output_loading_info=True, dtype=torch.float32
            )
            # the base class lacks exactly what it lacks on the original (MLM head, pooler)
            assert info["missing_keys"] == info_orig["missing_keys"] <= {"pooler.dense.weight", "pooler.dense.bias"}
            assert info["unexpected_keys"] == info_orig["unexpected_keys"]
            assert all(k.startswith("cls.") for k in info["unexpected_keys"])
            assert not info["mismatched_keys"] and not info["error_msgs"]
            base.eval()
            got = base(**inputs).last_hidden_state
            want = exp.model.bert(**inputs).last_hidden_state
            assert rel(pare_model(**inputs, output_hidden_states=True).hidden_states[-1], want) <= LOGITS_REL
        else:
            got = pare_model(**inputs).logits
            want = exp.model(**inputs).logits
    r = rel(got, want)
    print(case_id, "relative difference:", r)
    assert r <= LOGITS_REL, f"{case_id}: max relative difference {r:.3g} > {LOGITS_REL}"
    # and the trim did change the model (the check is not comparing the original with itself)
    with torch.no_grad():
        if fixture == "bert":
            o = exp.orig.bert(**inputs).last_hidden_state
        else:
            o = exp.orig(**inputs).logits
    assert rel(got, o) > 1e-3


# --------------------------------------------------------------------------- FLAP's property


def projection(model, fixture: str, kind: str) -> torch.nn.Module:
    if fixture == "gpt2":
        return model.transformer.h[0].mlp.c_proj
    if fixture == "bert":
        return model.bert.encoder.layer[0].output.dense
    layer = model.model.layers[0]
    return layer.mlp.down_proj if kind == "ffn" else layer.self_attn.o_proj


def token_batches(tokens: Path) -> list[torch.Tensor]:
    """The calibration sequences, each as pare runs it: one window per line / row."""
    if tokens.suffix == ".jsonl":
        return [torch.tensor([json.loads(line)]) for line in tokens.read_text().splitlines() if line.strip()]
    from safetensors import safe_open

    with safe_open(str(tokens), framework="pt") as f:
        assert set(f.keys()) == {"input_ids"}
        ids = f.get_tensor("input_ids")
    return [ids[i : i + 8] for i in range(0, ids.shape[0], 8)]


@torch.no_grad()
def mean_output(model, fixture: str, kind: str, tokens: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean over calibration tokens of the hooked projection's output, mean of its input)."""
    acc = {"out": 0, "in": 0, "n": 0}

    def hook(module, args, output):
        x = args[0].double().reshape(-1, args[0].shape[-1])
        y = output.double().reshape(-1, output.shape[-1])
        acc["in"] = acc["in"] + x.sum(0)
        acc["out"] = acc["out"] + y.sum(0)
        acc["n"] += y.shape[0]

    h = projection(model, fixture, kind).register_forward_hook(hook)
    try:
        for ids in token_batches(tokens):
            model(input_ids=ids, attention_mask=torch.ones_like(ids))
    finally:
        h.remove()
    return acc["out"] / acc["n"], acc["in"] / acc["n"]


@pytest.mark.parametrize("case_id", [c[0] for c in CASES])
def test_mean_output_is_preserved(case_id, run_case, tmp_path):
    """FLAP: the first layer's compensated projection has, on the calibration tokens, the
    mean output of the original one. Without --compensate bias it does not."""
    fixture, out, record, stats, stats_path, tokens, exp = run_case(case_id)
    kind = "ffn" if "ffn" in record["plan"] else "heads"
    n_tokens = int(record["selection"]["tokens"])

    want, x_mean = mean_output(exp.orig, fixture, kind, tokens)
    got, _ = mean_output(load_model(out, torch.float32), fixture, kind, tokens)

    # the hooked projection's compensated bias, by checkpoint name
    fam = exp.fam
    bias_name = fam["layer"].format(L=0) + (fam["down"] if kind == "ffn" else fam["o"]) + ".bias"
    assert bias_name in exp.compensated
    # the statistics pare used are this input's mean (our token handling is pare's)
    w_name = bias_name.removesuffix(".bias") + ".weight.input_mean"
    assert rel(stats[w_name].double(), x_mean) <= 1e-5, "input_mean is not the mean of the hooked input"
    assert sum(b.numel() for b in token_batches(tokens)) == n_tokens

    scale = want.abs().max()
    err = (got - want).abs()
    if fixture == "trained-llama":
        # bf16 checkpoint: the compensated bias is stored rounded to bf16 (relative ≤ 2^-8)
        bias = exp.compensated[bias_name][0]
        bound = 2.0**-8 * bias.abs() + MEAN_REL * scale
        print(case_id, "max err / bound", float((err / bound).max()))
        assert bool((err <= bound).all()), f"max |Δ| {float(err.max()):.3g}"
    else:
        r = float(err.max() / scale)
        print(case_id, "relative difference of mean outputs:", r)
        assert r <= MEAN_REL, f"{case_id}: mean output moved by {r:.3g} relative"

    # control: the same trim without compensation moves the mean
    _, _, opts, _ = next(c for c in CASES if c[0] == case_id)
    plain = tmp_path / "plain"
    rec2 = trim(fixture, plain, stats_path, opts, compensate=False)
    assert rec2["plan"] == record["plan"]
    uncomp, _ = mean_output(load_model(plain, torch.float32), fixture, kind, tokens)
    assert float((uncomp - want).abs().max() / scale) > 1e-3


# --------------------------------------------------------------------------- refusals


def _refused(tmp_path, fixture, opts, *fragments, stats=True, tmp_factory=None):
    out = tmp_path / "out"
    args = ["trim", FIXTURES / fixture, out, *opts, "--compensate", "bias"]
    if stats:
        _, s = stats_for(fixture, tmp_factory)
        args += ["--stats", s]
    proc = run_pare(args)
    err = expect_error(proc, 1, "--compensate bias", *fragments)
    assert not out.exists(), f"{out} was created by a refused trim"
    assert not any(tmp_path.iterdir()), f"left behind: {list(tmp_path.iterdir())}"
    return err


def test_no_mistral_fixture():
    """The brief's first refusal target; without it qwen2-moe and mixtral stand in."""
    assert not any(read_json(p / "config.json")["model_type"] == "mistral" for p in FIXTURES.iterdir() if p.is_dir())


@pytest.mark.parametrize(
    "fixture, opts",
    [
        ("qwen2-moe", ["--kv-heads", "1"]),  # q/k/v have biases, o_proj has none and no switch
        ("mixtral", ["--kv-heads", "1"]),
        ("mixtral", ["--heads", "2"]),
        ("qwen3", ["--ffn", "0.5"]),  # Qwen3MLP has no bias and no switch
    ],
)
def test_refused_without_bias(fixture, opts, tmp_path, tmp_path_factory):
    _refused(tmp_path, fixture, opts, tmp_factory=tmp_path_factory)


def test_refusals_match_the_classes():
    """What the refusals claim about the transformers classes is true: even with every
    switch on, these projections have no bias."""
    from transformers import AutoConfig, AutoModelForCausalLM

    for fixture, path in [
        ("qwen2-moe", lambda m: m.model.layers[0].self_attn.o_proj),
        ("mixtral", lambda m: m.model.layers[0].self_attn.o_proj),
        ("qwen3", lambda m: m.model.layers[0].mlp.down_proj),
        ("mixtral", lambda m: m.model.layers[0].mlp.experts),
    ]:
        cfg = AutoConfig.from_pretrained(str(FIXTURES / fixture))
        for sw in ("attention_bias", "mlp_bias", "qkv_bias"):
            setattr(cfg, sw, True)
        m = AutoModelForCausalLM.from_config(cfg)
        names = [n for n, _ in path(m).named_parameters()]
        assert not any("bias" in n for n in names), (fixture, names)


@pytest.mark.parametrize("fixture", ["mixtral", "qwen2-moe"])
def test_refused_expert_ffn(fixture, tmp_path, tmp_path_factory):
    _refused(tmp_path, fixture, ["--expert-ffn", "0.5"], "--expert-ffn", tmp_factory=tmp_path_factory)


def test_refused_shared_expert_ffn(tmp_path, tmp_path_factory):
    _refused(tmp_path, "qwen2-moe", ["--shared-expert-ffn", "0.5"], tmp_factory=tmp_path_factory)


@pytest.mark.parametrize("opts", [["--ffn", "0.5"], ["--kv-heads", "1"]])
def test_refused_without_statistics(opts, tmp_path):
    err = _refused(tmp_path, "llama-gqa-f32", opts, stats=False)
    assert "--stats" in err and "--calibrate" in err
