"""pare calibrate against an independent PyTorch collector (tools/collect_stats.py).

For every fixture family (and the trained fixtures), on token files of sequences of
different lengths (JSON lines; safetensors with attention-mask zeros; --seq-len and
--samples windows; one-token sequences; a single token that leaves experts unreached):
  - `pare calibrate` and collect_stats.py write the same tensor names, each 1-D F32 of the
    same shape, every tensor within 1e-4 relative (max |pare − collector| ≤
    1e-4 · max(max |collector|, 1e-30));
  - the metadata `tokens`, `sequences` and `model_sha256` are equal (and right);
  - both refuse the same bad inputs (pare: one `pare: error:` line, exit 1; the
    collector: one `collect_stats.py: error:` line, exit 1).

The collector itself is checked without its hook code:
  - block influence from transformers' `output_hidden_states=True` (every layer whose
    output is in that tuple: all of BERT's, all but a decoder's last, whose entry is
    after the final norm);
  - router counts, summed weights and β from `output_router_logits=True` (counts sum to
    tokens × top-k; Mixtral's renormalised weights sum to the token count);
  - every statistic of the llama, mixtral and qwen2-moe fixtures from a float64 NumPy
    forward pass written here from the checkpoint's tensors (RMSNorm, RoPE, GQA causal
    attention with qkv biases, SwiGLU, top-k routing with or without renormalisation, the
    shared expert and its sigmoid gate, mlp-only layers);
  - with one-token sequences Minitron importance equals the input norm of the same
    activation (heads, FFN channels, experts, shared expert, hidden).
pare's file is held to the same direct checks.

Tests that need pare skip (not fail) while the binary has no `calibrate` subcommand.
Set PARE_CALIBRATE_REPORT=FILE to get the largest measured difference per case as JSON.
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import FIXTURES, REPO_ROOT, describe, expect_error, read_header, run_pare, sha256

sys.path.insert(0, str(REPO_ROOT / "tools"))
import collect_stats as C  # noqa: E402
import reference_eval as R  # noqa: E402

torch.set_num_threads(1)

FAMILIES = ["bert", "gemma2", "gpt2", "llama-gqa-bf16", "llama-gqa-f32", "llama-sharded", "mixtral", "olmo2",
            "qwen2-moe", "qwen3", "qwen3-moe", "trained-llama", "trained-moe"]
MOE = ["mixtral", "qwen2-moe", "qwen3-moe", "trained-moe"]
NUMPY_FAMILIES = ["llama-gqa-f32", "llama-gqa-bf16", "llama-sharded", "trained-llama", "mixtral", "trained-moe",
                  "qwen2-moe"]
LENGTHS = (7, 13, 1, 20)
TOL = 1e-4  # max |got − want| / max(max |want|, TINY)
TINY = 1e-30
TOL_IDENTITY = 1e-5  # identities between two float32 statistics of one file

MEASURED: dict[str, dict] = {}


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    path = os.environ.get("PARE_CALIBRATE_REPORT")
    if path:
        Path(path).write_text(json.dumps(MEASURED, indent=1, sort_keys=True))


# --------------------------------------------------------------------------- helpers


@functools.lru_cache(maxsize=None)
def pare_has_calibrate() -> bool:
    proc = run_pare(["calibrate", "--help"])
    return proc.returncode == 0 and "--tokens" in proc.stdout + proc.stderr


def require_pare() -> None:
    if not pare_has_calibrate():
        pytest.skip("the pare binary has no `calibrate` subcommand yet")


def folder(fixture: str) -> Path:
    return FIXTURES / fixture


@functools.lru_cache(maxsize=None)
def cfg(fixture: str) -> dict:
    return json.loads((folder(fixture) / "config.json").read_text())


def vocab(fixture: str) -> int:
    return cfg(fixture)["vocab_size"]


def random_sequences(fixture: str, lengths=LENGTHS, seed: int = 0) -> list[list[int]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, vocab(fixture), n).tolist() for n in lengths]


def write_jsonl(path, seqs) -> Path:
    Path(path).write_text("".join(json.dumps([int(x) for x in s]) + "\n" for s in seqs))
    return Path(path)


def cut(seqs, seq_len=None, samples=None) -> list[list[int]]:
    """The windows the contract describes (written here, not taken from the collector)."""
    out = []
    for s in seqs:
        if not s:
            continue
        step = seq_len or len(s)
        out += [list(s[i:i + step]) for i in range(0, len(s), step)]
    return out if samples is None else out[:samples]


def read_stats(path) -> tuple[dict[str, torch.Tensor], dict]:
    """Tensors and metadata of a statistics file; asserts every tensor is 1-D F32."""
    from safetensors import safe_open

    header, names, _ = read_header(path)
    for k in names:
        assert header[k]["dtype"] == "F32", f"{path}: {k} is {header[k]['dtype']}, expected F32"
        assert len(header[k]["shape"]) == 1, f"{path}: {k} has shape {header[k]['shape']}, expected 1-D"
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})


def pare_calibrate(fixture, tokens, out, *opts) -> tuple[dict, dict]:
    proc = run_pare(["calibrate", folder(fixture), "--tokens", tokens, "-o", out, "--quiet", *opts], timeout=300)
    assert proc.returncode == 0, describe(proc)
    assert Path(out).is_file() and not Path(str(out) + ".tmp").exists()
    return read_stats(out)


def pare_calibrate_json(fixture, tokens, out, *opts) -> tuple[dict, dict, dict]:
    proc = run_pare(["calibrate", folder(fixture), "--tokens", tokens, "-o", out, "--json", *opts], timeout=300)
    assert proc.returncode == 0, describe(proc)
    try:
        summary = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail("stdout is not one JSON object\n" + describe(proc))
    tensors, meta = read_stats(out)
    return summary, tensors, meta


def collector(fixture, tokens, out, *opts) -> tuple[dict, dict]:
    rc = C.main([str(folder(fixture)), "--tokens", str(tokens), "-o", str(out), "--quiet", *map(str, opts)])
    assert rc == 0, f"collect_stats.py exited {rc}"
    assert Path(out).is_file() and not Path(str(out) + ".tmp").exists()
    return read_stats(out)


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.double(), want.double()
    return float((got - want).abs().max()) / max(float(want.abs().max()), TINY)


def assert_close_stats(got: dict, want: dict, case: str, got_is="pare", want_is="collector", tol=TOL,
                       names_must_match=True) -> float:
    """Every tensor of `want` within tol relative in `got`; returns the worst error."""
    if names_must_match:
        only_got, only_want = sorted(set(got) - set(want)), sorted(set(want) - set(got))
        assert not only_got and not only_want, (
            f"{case}: tensor names differ; only in {got_is}: {only_got}; only in {want_is}: {only_want}")
    bad, worst = [], 0.0
    for k in sorted(want):
        assert k in got, f"{case}: {got_is} has no {k}"
        g, w = got[k], want[k]
        assert list(g.shape) == list(w.shape), (
            f"{case}: {k} shape {list(g.shape)} in {got_is}, {list(w.shape)} in {want_is}")
        e = rel_err(g, w)
        worst = max(worst, e)
        if not e <= tol:
            i = int((g.double() - w.double()).abs().argmax())
            bad.append(f"  {k}: rel err {e:.3g} (max |{want_is}| {float(w.abs().max()):.6g}); at [{i}] "
                       f"{got_is} {float(g[i]):.9g} vs {want_is} {float(w[i]):.9g}; "
                       f"{got_is}[:4] {g[:4].tolist()} {want_is}[:4] {w[:4].tolist()}")
    MEASURED.setdefault(case, {})[f"{got_is}_vs_{want_is}"] = worst
    assert not bad, f"{case}: {len(bad)} of {len(want)} tensors differ beyond {tol:g} relative:\n" + "\n".join(bad)
    return worst


def assert_metadata(meta: dict, fixture: str, wins: list[list[int]], who: str) -> None:
    assert meta.get("tokens") == str(sum(len(w) for w in wins)), f"{who}: metadata tokens {meta.get('tokens')!r}"
    assert meta.get("sequences") == str(len(wins)), f"{who}: metadata sequences {meta.get('sequences')!r}"
    f = folder(fixture)
    index = f / "model.safetensors.index.json"
    want = sha256(index if index.is_file() else f / "model.safetensors")
    assert meta.get("model_sha256") == want, f"{who}: model_sha256 {meta.get('model_sha256')!r}, expected {want}"
    assert meta.get("format") == "pt", f"{who}: metadata format {meta.get('format')!r}"


def compare_both(fixture, tokens, tmp_path, case, wins, *opts) -> tuple[dict, dict]:
    """Runs pare and the collector on one tokens file; asserts they agree. Returns (pare, collector)."""
    require_pare()
    col, cmeta = collector(fixture, tokens, tmp_path / "collector.safetensors", *opts)
    par, pmeta = pare_calibrate(fixture, tokens, tmp_path / "pare.safetensors", *opts)
    assert_metadata(cmeta, fixture, wins, "collector")
    assert_metadata(pmeta, fixture, wins, "pare")
    for k in ("tokens", "sequences", "model_sha256"):
        assert pmeta[k] == cmeta[k], f"{case}: metadata {k}: pare {pmeta[k]!r}, collector {cmeta[k]!r}"
    assert_close_stats(par, col, case)
    return par, col


# --------------------------------------------------------------------------- layer roles


LAYER_RE = re.compile(r"(?:^|\.)(?:layers|h|layer)\.(\d+)\.(.+)\.weight\.input_norm$")
ROLE = {
    "self_attn.q_proj": "attn_in", "attn.c_attn": "attn_in", "attention.self.query": "attn_in",
    "self_attn.o_proj": "attn_out", "attn.c_proj": "attn_out", "attention.output.dense": "attn_out",
    "mlp.up_proj": "mlp_in", "mlp.c_fc": "mlp_in", "intermediate.dense": "mlp_in",
    "mlp.down_proj": "down", "mlp.c_proj": "down", "output.dense": "down",
    "mlp.gate": "router", "block_sparse_moe.gate": "router",
    "mlp.shared_expert.down_proj": "shared_down",
}
EXPERT_DOWN_RE = re.compile(r"^(?:mlp|block_sparse_moe)\.experts\.(\d+)\.(?:down_proj|w2)$")


def roles(stats: dict) -> dict[int, dict]:
    """{layer: {role: input-norm tensor name, ("expert_down", e): name}} from a statistics file's names."""
    out: dict[int, dict] = {}
    for k in stats:
        m = LAYER_RE.search(k)
        if not m:
            continue
        layer, rel = int(m.group(1)), m.group(2)
        if rel in ROLE:
            out.setdefault(layer, {})[ROLE[rel]] = k
        elif em := EXPERT_DOWN_RE.match(rel):
            out.setdefault(layer, {})[("expert_down", int(em.group(1)))] = k
    return out


def assert_one_token_identities(stats: dict, fixture: str, who: str) -> None:
    """With one-token sequences, mean_t |x| = |x|, so Minitron importance = input norm."""
    heads = cfg(fixture).get("num_attention_heads") or cfg(fixture)["n_head"]
    layers = roles(stats)
    hidden = None
    problems = []

    def check(what, got, want):
        e = rel_err(got, want)
        if not e <= TOL_IDENTITY:
            problems.append(f"  {what}: rel err {e:.3g}; {got[:4].tolist()} vs {want[:4].tolist()}")

    for l, r in sorted(layers.items()):
        assert "attn_in" in r and "attn_out" in r, f"{who}: layer {l} roles {r}"
        o = stats[r["attn_out"]].double()
        heads_name = f"layers.{l}.attention.heads"
        check(heads_name, stats[heads_name], (o * o).reshape(heads, -1).sum(-1).sqrt())
        if "down" in r:
            check(f"layers.{l}.mlp.channels", stats[f"layers.{l}.mlp.channels"], stats[r["down"]])
        if "shared_down" in r:
            shared = f"layers.{l}.shared_expert.channels"
            check(shared, stats[shared], stats[r["shared_down"]])
        for key, name in r.items():
            if isinstance(key, tuple):
                channels = f"layers.{l}.experts.{key[1]}.channels"
                check(channels, stats[channels], stats[name])
        mlp_in = r.get("router", r.get("mlp_in"))
        assert mlp_in is not None, f"{who}: layer {l} has no MLP branch input among {sorted(map(str, r))}"
        term = stats[r["attn_in"]].double() + stats[mlp_in].double()
        hidden = term if hidden is None else hidden + term
    check("hidden", stats["hidden"], hidden)
    assert not problems, f"{fixture} ({who}): one-token identities fail:\n" + "\n".join(problems)


# --------------------------------------------------------------------------- pare vs collector


def test_every_fixture_is_covered():
    present = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir())
    assert sorted(FAMILIES) == present, f"fixtures {present}, covered {sorted(FAMILIES)}"


@pytest.mark.parametrize("fixture", FAMILIES)
def test_jsonl_tokens_agree(fixture, tmp_path):
    seqs = random_sequences(fixture)
    tokens = write_jsonl(tmp_path / "ids.jsonl", seqs)
    par, col = compare_both(fixture, tokens, tmp_path, f"{fixture}:jsonl", cut(seqs))
    # Not vacuous: every statistic the model has is there, and carries signal.
    n_layers = cfg(fixture).get("num_hidden_layers") or cfg(fixture)["n_layer"]
    for l in range(n_layers):
        for k in (f"layers.{l}.attention.heads", f"layers.{l}.block_influence"):
            assert k in col, f"collector wrote no {k}"
        assert float(col[f"layers.{l}.attention.heads"].min()) > 0
    assert float(col["hidden"].min()) > 0


@pytest.mark.parametrize("fixture", ["llama-gqa-f32", "llama-gqa-bf16", "mixtral", "qwen2-moe", "gpt2", "bert"])
def test_masked_safetensors_tokens_agree(fixture, tmp_path):
    from safetensors.torch import save_file

    gen = torch.Generator().manual_seed(7)
    ids = torch.randint(0, vocab(fixture), (4, 16), generator=gen, dtype=torch.int64)
    mask = torch.ones(4, 16, dtype=torch.int64)
    mask[1, :3] = 0  # left padding
    mask[2, 10:] = 0  # right padding
    mask[2, 5] = 0  # a hole
    mask[3, :] = 0  # nothing left: no window
    path = tmp_path / "ids.safetensors"
    save_file({"input_ids": ids.to(torch.int32), "attention_mask": mask}, str(path))
    expected = [ids[r][mask[r] != 0].tolist() for r in range(4)]
    assert C.read_tokens(path) == expected
    wins = cut(expected)
    assert [len(w) for w in wins] == [16, 13, 9]
    par, col = compare_both(fixture, path, tmp_path, f"{fixture}:masked", wins)


@pytest.mark.parametrize("variant", ["1-D int16 ids, bool mask", "JSON objects and blank lines", "u8 ids, no suffix"])
def test_token_file_variants_agree(variant, tmp_path):
    from safetensors.torch import save_file

    fixture = "llama-gqa-f32"
    seqs = random_sequences(fixture, lengths=(9, 4, 12), seed=4)
    if variant.startswith("1-D"):
        ids = torch.tensor(seqs[0] + seqs[2], dtype=torch.int16)
        mask = torch.ones(len(ids), dtype=torch.bool)
        mask[9:11] = False
        path = tmp_path / "ids.safetensors"
        save_file({"input_ids": ids, "attention_mask": mask}, str(path))
        expected = [ids[mask].tolist()]
    elif variant.startswith("JSON"):
        path = tmp_path / "ids.jsonl"
        # (A file is JSON lines when its first non-blank byte is `[`, so the first line is a list.)
        path.write_text("\n".join(["", json.dumps(seqs[0]), "  ", json.dumps({"input_ids": seqs[1]}),
                                    "\t" + json.dumps({"input_ids": seqs[2]}) + "\r", ""]))
        expected = seqs
    else:  # safetensors recognised by content, not by name
        ids = torch.tensor([[t % 256 for t in seqs[0][:4]], [t % 256 for t in seqs[1]]], dtype=torch.uint8)
        path = tmp_path / "ids.bin"
        save_file({"input_ids": ids}, str(path))
        expected = ids.tolist()
    assert C.read_tokens(path) == expected
    compare_both(fixture, path, tmp_path, f"{fixture}:{variant}", cut(expected))


WINDOW_CASES = [
    ("llama-gqa-f32", ["--seq-len", "6", "--threads", "1"]),
    ("llama-gqa-f32", ["--samples", "2"]),
    ("qwen3-moe", ["--seq-len", "6", "--samples", "5"]),
    ("mixtral", ["--seq-len", "4"]),
    ("gpt2", ["--seq-len", "8", "--samples", "3"]),
    ("bert", ["--seq-len", "5"]),
]


@pytest.mark.parametrize("fixture,opts", WINDOW_CASES, ids=[f"{f}:{' '.join(o)}" for f, o in WINDOW_CASES])
def test_windows_agree(fixture, opts, tmp_path):
    require_pare()
    seqs = random_sequences(fixture, lengths=(23, 5, 17), seed=3)
    tokens = write_jsonl(tmp_path / "ids.jsonl", seqs)
    o = dict(zip(opts[::2], opts[1::2]))
    seq_len = int(o["--seq-len"]) if "--seq-len" in o else None
    samples = int(o["--samples"]) if "--samples" in o else None
    wins = cut(seqs, seq_len, samples)
    assert C.windows(C.read_tokens(tokens), seq_len, samples) == wins
    case = f"{fixture}:{' '.join(opts)}"
    compare_both(fixture, tokens, tmp_path, case, wins, *opts)
    # The --json summary counts the same windows; a windowed run differs from the whole.
    summary, par, meta = pare_calibrate_json(fixture, tokens, tmp_path / "pare-json.safetensors", *opts)
    assert summary["sequences"] == len(wins) and summary["tokens"] == sum(map(len, wins)), summary
    assert summary["model_sha256"] == meta["model_sha256"] and summary["family"] == cfg(fixture)["model_type"]
    whole, _ = read_stats(tmp_path / "pare.safetensors")
    assert_close_stats(par, whole, case + " (--json run)", "pare --json", "pare --quiet", tol=1e-6)
    full, _ = collector(fixture, tokens, tmp_path / "full.safetensors")
    assert any(rel_err(par[k], full[k]) > 1e-3 for k in full), "windowing changed nothing"


@pytest.mark.parametrize("fixture", FAMILIES)
def test_one_token_sequences(fixture, tmp_path):
    """Six one-token sequences: Minitron importance collapses to the input norm, in both files."""
    seqs = random_sequences(fixture, lengths=(1,) * 6, seed=11)
    tokens = write_jsonl(tmp_path / "ids.jsonl", seqs)
    col, _ = collector(fixture, tokens, tmp_path / "collector.safetensors")
    assert_one_token_identities(col, fixture, "collector")
    if pare_has_calibrate():
        par, _ = pare_calibrate(fixture, tokens, tmp_path / "pare.safetensors")
        assert_one_token_identities(par, fixture, "pare")
        assert_close_stats(par, col, f"{fixture}:one-token")


@pytest.mark.parametrize("fixture", MOE)
def test_unreached_experts_are_zero(fixture, tmp_path):
    """One token, top-2 of 4 experts: two experts per MoE layer see nothing and get zeros."""
    seqs = random_sequences(fixture, lengths=(1,), seed=5)
    tokens = write_jsonl(tmp_path / "ids.jsonl", seqs)
    col, _ = collector(fixture, tokens, tmp_path / "collector.safetensors")
    files = [("collector", col)]
    if pare_has_calibrate():
        par, _ = pare_calibrate(fixture, tokens, tmp_path / "pare.safetensors")
        assert_close_stats(par, col, f"{fixture}:one-token-unreached")
        files.append(("pare", par))
    k = cfg(fixture)["num_experts_per_tok"]
    for who, stats in files:
        moe_layers = sorted(int(m.group(1)) for n in stats if (m := re.match(r"layers\.(\d+)\.router\.tokens$", n)))
        assert moe_layers, f"{who}: no MoE layer statistics"
        for l in moe_layers:
            counts = stats[f"layers.{l}.router.tokens"]
            assert counts.tolist().count(1.0) == k and float(counts.sum()) == k, (
                f"{who}: layer {l} counts {counts.tolist()}")
            for e, c in enumerate(counts.tolist()):
                pattern = rf"(^|\.)layers\.{l}\.(mlp|block_sparse_moe)\.experts\.{e}\."
                per_expert = [n for n in stats if re.search(pattern, n)]
                per_expert.append(f"layers.{l}.experts.{e}.channels")
                assert len(per_expert) == 7, f"{who}: layer {l} expert {e}: {per_expert}"  # 3 input norms, 3 input means, channels
                for n in per_expert:
                    zero = bool((stats[n] == 0).all())
                    assert zero == (c == 0), f"{who}: {n} is {'zero' if zero else 'non-zero'} with {c} tokens routed"
                assert (float(stats[f"layers.{l}.experts.output_norm"][e]) == 0) == (c == 0)
                assert (float(stats[f"layers.{l}.router.weight"][e]) == 0) == (c == 0)


# --------------------------------------------------------------------------- refusals


def _bad_inputs(tmp_path, fixture):
    from safetensors.torch import save_file

    v = vocab(fixture)
    cases = {
        "missing": tmp_path / "nope.jsonl",
        "out-of-vocab": write_jsonl(tmp_path / "oov.jsonl", [[1, 2, v]]),
        "negative": write_jsonl(tmp_path / "neg.jsonl", [[-1, 2]]),
        "empty": write_jsonl(tmp_path / "empty.jsonl", [[]]),
        "not-json": tmp_path / "bad.jsonl",
        "float-ids": tmp_path / "float.safetensors",
        "too-long": write_jsonl(tmp_path / "long.jsonl", [list(range(65))]),
    }
    (tmp_path / "bad.jsonl").write_text("[1, 2]\nnot json\n")
    save_file({"input_ids": torch.zeros(2, 3)}, str(tmp_path / "float.safetensors"))
    return cases


@pytest.mark.parametrize("case", ["missing", "out-of-vocab", "negative", "empty", "not-json", "float-ids", "too-long"])
def test_bad_tokens_are_refused_by_both(case, tmp_path, capsys):
    fixture = "gpt2"  # 64 learned positions
    tokens = _bad_inputs(tmp_path, fixture)[case]
    out = tmp_path / "stats.safetensors"
    rc = C.main([str(folder(fixture)), "--tokens", str(tokens), "-o", str(out), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 1, f"collector accepted {case}"
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1 and lines[0].startswith("collect_stats.py: error: "), err
    assert not out.exists() and not Path(str(out) + ".tmp").exists()
    if pare_has_calibrate():
        expect_error(run_pare(["calibrate", folder(fixture), "--tokens", tokens, "-o", out, "--quiet"]), 1)
        assert not out.exists()


def test_rotary_models_take_windows_beyond_max_positions(tmp_path):
    """max_position_embeddings does not bound a rotary model's windows (pare runs them too)."""
    fixture = "llama-gqa-f32"
    n = cfg(fixture)["max_position_embeddings"] + 20
    seqs = random_sequences(fixture, lengths=(n,), seed=2)
    tokens = write_jsonl(tmp_path / "ids.jsonl", seqs)
    if pare_has_calibrate():
        compare_both(fixture, tokens, tmp_path, f"{fixture}:beyond-positions", cut(seqs))
    else:
        collector(fixture, tokens, tmp_path / "collector.safetensors")


def test_collector_command_line(tmp_path):
    """The script as a program: summary on stdout, the file renamed into place."""
    seqs = random_sequences("qwen2-moe")
    tokens = write_jsonl(tmp_path / "ids.jsonl", seqs)
    out = tmp_path / "stats.safetensors"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "collect_stats.py"), str(folder("qwen2-moe")),
                           "--tokens", str(tokens), "-o", str(out), "--seq-len", "8"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and str(out) in proc.stdout, proc.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ids.jsonl", "stats.safetensors"]
    _, meta = read_stats(out)
    assert meta["tool"].startswith("tools/collect_stats.py (transformers ") and "torch " in meta["tool"], meta
    assert_metadata(meta, "qwen2-moe", cut(seqs, 8), "collector")


# --------------------------------------------------------------------------- direct checks of the definitions


@functools.lru_cache(maxsize=None)
def transformers_model(fixture: str):
    return R.load(folder(fixture))


def collector_stats(fixture: str, seqs) -> dict:
    tensors, _ = C.collect(folder(fixture), [list(s) for s in seqs], model=transformers_model(fixture))
    return tensors


def pare_stats(fixture: str, seqs, tmp_path) -> dict | None:
    if not pare_has_calibrate():
        return None
    tokens = write_jsonl(tmp_path / "direct.jsonl", seqs)
    return pare_calibrate(fixture, tokens, tmp_path / "direct-pare.safetensors")[0]


def _cos_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    return np.where(den > 0, (a * b).sum(-1) / np.where(den > 0, den, 1.0), 0.0)


@pytest.mark.parametrize("fixture", FAMILIES)
def test_block_influence_from_output_hidden_states(fixture, tmp_path):
    seqs = random_sequences(fixture)
    model = transformers_model(fixture)
    encoder = cfg(fixture)["model_type"] in R.ENCODER_TYPES
    cosines: dict[int, list] = {}
    with torch.no_grad():
        for s in seqs:
            ids = torch.tensor([s])
            kw = {} if encoder else {"use_cache": False}
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True, **kw)
            hs = out.hidden_states
            n_layers = len(hs) - 1
            # A decoder's last entry is after the final norm, not the last layer's output.
            for l in range(n_layers if encoder else n_layers - 1):
                cosines.setdefault(l, []).append(_cos_rows(hs[l][0].double().numpy(), hs[l + 1][0].double().numpy()))
    want = {f"layers.{l}.block_influence": torch.tensor([1.0 - np.concatenate(c).mean()]) for l, c in cosines.items()}
    assert want
    assert_close_stats(collector_stats(fixture, seqs), want, f"{fixture}:block-influence", "collector",
                       "output_hidden_states", names_must_match=False)
    par = pare_stats(fixture, seqs, tmp_path)
    if par is not None:
        assert_close_stats(par, want, f"{fixture}:block-influence", "pare", "output_hidden_states",
                           names_must_match=False)


@pytest.mark.parametrize("fixture", MOE)
def test_router_statistics_from_output_router_logits(fixture, tmp_path):
    seqs = random_sequences(fixture, lengths=(7, 13, 1, 20, 30), seed=1)
    model = transformers_model(fixture)
    c = cfg(fixture)
    k = c["num_experts_per_tok"]
    renorm = c["model_type"] == "mixtral" or bool(c.get("norm_topk_prob"))
    logits_by_layer: list[list[np.ndarray]] = []
    with torch.no_grad():
        for s in seqs:
            ids = torch.tensor([s])
            out = model(input_ids=ids, attention_mask=torch.ones_like(ids), output_router_logits=True, use_cache=False)
            for i, lg in enumerate(out.router_logits):
                if len(logits_by_layer) <= i:
                    logits_by_layer.append([])
                logits_by_layer[i].append(lg.reshape(-1, lg.shape[-1]).double().numpy())
    col = collector_stats(fixture, seqs)
    files = [("collector", col)]
    par = pare_stats(fixture, seqs, tmp_path)
    if par is not None:
        files.append(("pare", par))
    moe_layers = sorted(int(m.group(1)) for n in col if (m := re.match(r"layers\.(\d+)\.router\.tokens$", n)))
    assert len(moe_layers) == len(logits_by_layer), (moe_layers, len(logits_by_layer))
    tokens = sum(map(len, seqs))
    for l, parts in zip(moe_layers, logits_by_layer):
        lg = np.concatenate(parts)
        p = np.exp(lg - lg.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        top = np.argsort(-p, axis=-1, kind="stable")[:, :k]
        w = np.take_along_axis(p, top, -1)
        if renorm:
            w = w / w.sum(-1, keepdims=True)
        e = p.shape[-1]
        counts = np.bincount(top.reshape(-1), minlength=e).astype(np.float64)
        weights = np.zeros(e)
        np.add.at(weights, top.reshape(-1), w.reshape(-1))
        ws = np.sort(w, -1)[:, ::-1]
        beta = float(np.median(ws[:, 1] / ws[:, 0]))
        assert counts.sum() == tokens * k
        want = {f"layers.{l}.router.tokens": torch.tensor(counts), f"layers.{l}.router.weight": torch.tensor(weights),
                f"layers.{l}.router.beta": torch.tensor([beta])}
        for who, stats in files:
            assert float(stats[f"layers.{l}.router.tokens"].sum()) == tokens * k, f"{who}: layer {l}"
            assert torch.equal(stats[f"layers.{l}.router.tokens"].double(), torch.tensor(counts)), (
                f"{who}: layer {l} router.tokens {stats[f'layers.{l}.router.tokens'].tolist()} vs {counts.tolist()}")
            if renorm:
                s = float(stats[f"layers.{l}.router.weight"].double().sum())
                assert abs(s - tokens) <= 1e-5 * tokens, (
                    f"{who}: layer {l}: renormalised weights sum to {s}, not {tokens}")
            assert_close_stats(stats, want, f"{fixture}:router", who, "output_router_logits", tol=1e-5,
                               names_must_match=False)


# ---- a float64 NumPy forward pass of the llama, mixtral and qwen2-moe fixtures, from the checkpoint


def _checkpoint_arrays(path: Path) -> dict[str, np.ndarray]:
    from safetensors.torch import load_file

    out = {}
    for f in sorted(path.glob("*.safetensors")):
        out.update({k: v.double().numpy() for k, v in load_file(str(f)).items()})
    return out


def _rms(x, w, eps):
    return x / np.sqrt((x * x).mean(-1, keepdims=True) + eps) * w


def _silu(x):
    return x / (1.0 + np.exp(-x))


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def numpy_statistics(fixture: str, seqs) -> dict[str, torch.Tensor]:
    """Every statistic of the contract for a llama, mixtral or qwen2_moe checkpoint, by definition."""
    c = cfg(fixture)
    family = c["model_type"]
    assert family in ("llama", "mixtral", "qwen2_moe"), family
    W = _checkpoint_arrays(folder(fixture))
    H, nh, L = c["hidden_size"], c["num_attention_heads"], c["num_hidden_layers"]
    nkv = c.get("num_key_value_heads") or nh
    d = c.get("head_dim") or H // nh
    eps = c["rms_norm_eps"]
    rope = c.get("rope_parameters") or {}
    assert rope.get("rope_type", "default") == "default"
    theta = rope.get("rope_theta", c.get("rope_theta", 10000.0))
    E, k = c.get("num_local_experts") or c.get("num_experts"), c.get("num_experts_per_tok")
    if family == "mixtral":
        moe_layers, moe, leaves, renorm = set(range(L)), "block_sparse_moe.", ("w1", "w3", "w2"), True
    elif family == "qwen2_moe":
        step, only = c.get("decoder_sparse_step", 1), set(c.get("mlp_only_layers", []))
        moe_layers = {l for l in range(L) if l not in only and E and (l + 1) % step == 0}
        moe, leaves, renorm = "mlp.", ("gate_proj", "up_proj", "down_proj"), bool(c.get("norm_topk_prob"))
    else:
        moe_layers = set()
    sq: dict[str, np.ndarray] = {}
    lin: dict[str, np.ndarray] = {}
    seen: dict[str, int] = {}  # tokens summed per weight
    mini: dict[str, np.ndarray] = {}
    cos_sum, cos_n = np.zeros(L), 0
    counts = {l: np.zeros(E) for l in moe_layers}
    rweight = {l: np.zeros(E) for l in moe_layers}
    outsq = {l: np.zeros(E) for l in moe_layers}
    ratios: dict[int, list] = {l: [] for l in moe_layers}

    def add_sq(name, x):
        sq[name] = sq.get(name, 0.0) + (x * x).sum(0)
        lin[name] = lin.get(name, 0.0) + x.sum(0)
        seen[name] = seen.get(name, 0) + len(x)

    def add_mini(name, x):
        if len(x):
            mini[name] = mini.get(name, 0.0) + np.abs(x).mean(0) ** 2

    def linear(x, name):
        y = x @ W[name + ".weight"].T
        return y + W[name + ".bias"] if name + ".bias" in W else y

    def swiglu(x, gate, up, down, channels):
        """gate/up/down: checkpoint names of one FFN; statistics of its inputs; its output."""
        add_sq(gate + ".weight", x)
        add_sq(up + ".weight", x)
        m = _silu(linear(x, gate)) * linear(x, up)
        add_sq(down + ".weight", m)
        add_mini(channels, m)
        return linear(m, down)

    for s in seqs:
        T = len(s)
        h = W["model.embed_tokens.weight"][np.array(s)]
        inv = 1.0 / theta ** (np.arange(0, d, 2) / d)
        ang = np.arange(T)[:, None] * inv[None, :]
        cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

        def rope_(x):  # [T, heads, d]
            rot = np.concatenate([-x[..., d // 2:], x[..., : d // 2]], -1)
            return x * cos[:, None] + rot * sin[:, None]

        causal = np.triu(np.ones((T, T), dtype=bool), 1)
        for l in range(L):
            p = f"model.layers.{l}."
            x = _rms(h, W[p + "input_layernorm.weight"], eps)
            for proj in ("q_proj", "k_proj", "v_proj"):
                add_sq(p + f"self_attn.{proj}.weight", x)
            add_mini(f"hidden:{l}:attention", x)
            q = rope_(linear(x, p + "self_attn.q_proj").reshape(T, nh, d))
            kk = rope_(linear(x, p + "self_attn.k_proj").reshape(T, nkv, d))
            v = linear(x, p + "self_attn.v_proj").reshape(T, nkv, d)
            att = np.zeros((T, nh, d))
            for hh in range(nh):
                g = hh // (nh // nkv)
                sc = q[:, hh] @ kk[:, g].T / math.sqrt(d)
                sc[causal] = -np.inf
                att[:, hh] = _softmax(sc) @ v[:, g]
            a = att.reshape(T, nh * d)
            add_sq(p + "self_attn.o_proj.weight", a)
            add_mini(f"heads:{l}", a)
            h2 = h + linear(a, p + "self_attn.o_proj")
            x2 = _rms(h2, W[p + "post_attention_layernorm.weight"], eps)
            add_mini(f"hidden:{l}:mlp", x2)
            if l in moe_layers:
                q_ = p + moe
                add_sq(q_ + "gate.weight", x2)
                probs = _softmax(x2 @ W[q_ + "gate.weight"].T)
                top = np.argsort(-probs, -1, kind="stable")[:, :k]
                tw = np.take_along_axis(probs, top, -1)
                if renorm:
                    tw = tw / tw.sum(-1, keepdims=True)
                counts[l] += np.bincount(top.reshape(-1), minlength=E)
                np.add.at(rweight[l], top.reshape(-1), tw.reshape(-1))
                srt = np.sort(tw, -1)[:, ::-1]
                ratios[l].append(srt[:, 1] / srt[:, 0])
                y = np.zeros_like(h2)
                for e in range(E):
                    rows, slots = np.nonzero(top == e)
                    if not len(rows):
                        continue
                    pe = q_ + f"experts.{e}."
                    ye = swiglu(x2[rows], *(pe + leaf for leaf in leaves), f"layers.{l}.experts.{e}.channels")
                    outsq[l][e] += (ye * ye).sum()
                    np.add.at(y, rows, tw[rows, slots][:, None] * ye)
                if q_ + "shared_expert.gate_proj.weight" in W:
                    ys = swiglu(x2, *(q_ + f"shared_expert.{leaf}" for leaf in ("gate_proj", "up_proj", "down_proj")),
                                f"layers.{l}.shared_expert.channels")
                    add_sq(q_ + "shared_expert_gate.weight", x2)
                    y = y + 1.0 / (1.0 + np.exp(-linear(x2, q_ + "shared_expert_gate"))) * ys
                h3 = h2 + y
            else:
                h3 = h2 + swiglu(x2, p + "mlp.gate_proj", p + "mlp.up_proj", p + "mlp.down_proj",
                                 f"layers.{l}.mlp.channels")
            cos_sum[l] += _cos_rows(h, h3).sum()
            h = h3
        cos_n += T

    out: dict[str, np.ndarray] = {}
    for name, v in sq.items():
        out[name + ".input_norm"] = np.sqrt(v)
        out[name + ".input_mean"] = lin[name] / seen[name] if seen[name] else np.zeros_like(v)
    hidden = np.zeros(H)
    for l in range(L):
        hidden += np.sqrt(mini[f"hidden:{l}:attention"]) + np.sqrt(mini[f"hidden:{l}:mlp"])
        m = np.sqrt(mini[f"heads:{l}"])
        out[f"layers.{l}.attention.heads"] = np.sqrt((m * m).reshape(nh, d).sum(-1))
        out[f"layers.{l}.block_influence"] = np.array([1.0 - cos_sum[l] / cos_n])
        if l in moe_layers:
            pe = f"model.layers.{l}.{moe}experts."
            inter = W[f"{pe}0.{leaves[2]}.weight"].shape[1]
            for e in range(E):  # an expert no token reached: zeros
                channels = f"layers.{l}.experts.{e}.channels"
                out[channels] = np.sqrt(mini.get(channels, np.zeros(inter)))
                for leaf, width in zip(leaves, (H, H, inter)):
                    out.setdefault(f"{pe}{e}.{leaf}.weight.input_norm", np.zeros(width))
                    out.setdefault(f"{pe}{e}.{leaf}.weight.input_mean", np.zeros(width))
            if f"layers.{l}.shared_expert.channels" in mini:
                out[f"layers.{l}.shared_expert.channels"] = np.sqrt(mini[f"layers.{l}.shared_expert.channels"])
            out[f"layers.{l}.router.tokens"] = counts[l]
            out[f"layers.{l}.router.weight"] = rweight[l]
            out[f"layers.{l}.router.beta"] = np.array([np.median(np.concatenate(ratios[l]))])
            out[f"layers.{l}.experts.output_norm"] = np.sqrt(outsq[l])
        else:
            out[f"layers.{l}.mlp.channels"] = np.sqrt(mini[f"layers.{l}.mlp.channels"])
    out["hidden"] = hidden
    return {k: torch.from_numpy(np.asarray(v, dtype=np.float64)) for k, v in out.items()}


@pytest.mark.parametrize("fixture", NUMPY_FAMILIES)
def test_every_statistic_from_a_numpy_forward(fixture, tmp_path):
    seqs = random_sequences(fixture)
    want = numpy_statistics(fixture, seqs)
    assert_close_stats(collector_stats(fixture, seqs), want, f"{fixture}:numpy", "collector", "numpy")
    par = pare_stats(fixture, seqs, tmp_path)
    if par is not None:
        assert_close_stats(par, want, f"{fixture}:numpy", "pare", "numpy")
