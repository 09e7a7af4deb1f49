"""LaCo's greedy merge search (`pare trim --merge-layers auto --target-layers N`) against a
re-implementation in torch + transformers written here from the documented walk.

The walk (README "Choosing what to cut from data", LaCo paragraph):
  current = [[0], [1], ..., [L-1]] (runs of checkpoint layers), merges = [];
  lay = max(0, L − 2 − min(M − 1, L − N));
  while lay ≥ 0 and len(current) > N:
      count = min(M − 1, len(current) − lay − 1, len(current) − N); count ≤ 0 → lay −= 1
      run = current[lay] + ... + current[lay + count]          (checkpoint layer indices)
      candidate = [m for m in merges if m ⊄ run] + [run]
      similarity = mean over calibration windows of cos(flatten(final hidden states of the
                   candidate model), flatten(the original's))     (after the final norm, f32)
      accept (≥ T): merges = candidate, current = its layout, lay −= I; else lay −= 1.
A run [a0, ..., ak] becomes one layer with θ = θ_a0 + Σ_{j≥1}(θ_aj − θ_a0) in float32 from
the checkpoint's weights (left to right), rounded to the checkpoint dtype; norm weights are
the first layer's; every other layer of the run is removed.

Models: Tests/Fixtures/models/trained-llama (4 layers, bf16, trained, with its calibration
windows) and an 8-layer random Llama built here in f32 (seeded; norm weights perturbed so
keeping the first layer's norms is visible). Thresholds marked `pick` are chosen from the
similarities computed here: halfway between two of them, at least MARGIN from every
similarity of the resulting walk, so that the walk accepts and refuses what the case asks.

For every case:
  - pare's trials (run, accepted) equal ours in order; similarities within SIM_TOL absolute;
  - pare's final merges (selection and plan) equal ours, the layer count too;
  - the written model has exactly our merged tensors (bf16 bit-exact, f32 within 1e-6),
    loads in transformers without loading problems, and its final hidden states give the
    last accepted trial's similarity;
  - when no merge is accepted: exit 1, one `pare: error:` line naming `--merge-layers auto`,
    nothing written.
Set PARE_LACO_REPORT=FILE to get every trial's two similarities as JSON.
"""

from __future__ import annotations

import functools
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

from conftest import (
    FIXTURES,
    REPO_ROOT,
    bits,
    describe,
    expect_error,
    load_model,
    read_tensors,
    run_pare,
    tree_digest,
)

torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))

CALIBRATION = REPO_ROOT / "Tests" / "Fixtures" / "calibration" / "trained-llama.safetensors"
SIM_TOL = 1e-4  # |pare's similarity − ours|
F32_TOL = 1e-6  # |pare's merged f32 weight − ours|
MARGIN = 5e-3  # a picked threshold stays this far from every similarity of its walk
DEFAULT_SPAN, DEFAULT_INTERVAL, DEFAULT_THRESHOLD = 7, 1, 0.45

MEASURED: dict[str, dict] = {}


@pytest.fixture(scope="module", autouse=True)
def _report():
    yield
    path = os.environ.get("PARE_LACO_REPORT")
    if path:
        Path(path).write_text(json.dumps(MEASURED, indent=1, sort_keys=True))


# --------------------------------------------------------------------------- the reference


def load_state(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    sd: dict[str, torch.Tensor] = {}
    for f in sorted(Path(folder).glob("*.safetensors")):
        part = load_file(str(f))
        assert not set(part) & set(sd), f"{f}: tensor in two files"
        sd.update(part)
    return sd


def layout_of(merges: list[list[int]], layers: int) -> list[list[int]]:
    """The model's layers as runs of checkpoint layers, given the merged runs."""
    starts = {m[0]: m for m in merges}
    absorbed = {i for m in merges for i in m[1:]}
    return [starts.get(i, [i]) for i in range(layers) if i not in absorbed]


def merge_tensors(ts: list[torch.Tensor]) -> torch.Tensor:
    """θ_a0 + Σ(θ_aj − θ_a0), float32, left to right, rounded to the checkpoint dtype."""
    base = ts[0].float()
    acc = base.clone()
    for t in ts[1:]:
        acc = acc + (t.float() - base)
    return acc.to(ts[0].dtype)


def merged_state(sd: dict[str, torch.Tensor], merges: list[list[int]], layers: int) -> dict[str, torch.Tensor]:
    """The checkpoint of the merged model (checkpoint dtype), layers renumbered."""
    out = {k: v for k, v in sd.items() if not k.startswith("model.layers.")}
    for new, run in enumerate(layout_of(merges, layers)):
        prefix = f"model.layers.{run[0]}."
        names = [k[len(prefix):] for k in sd if k.startswith(prefix)]
        assert names, f"no tensors for layer {run[0]}"
        for rest in names:
            if len(run) == 1 or rest.endswith("norm.weight"):
                t = sd[prefix + rest]
            else:
                t = merge_tensors([sd[f"model.layers.{i}.{rest}"] for i in run])
            out[f"model.layers.{new}.{rest}"] = t
    return out


def windows(ids: torch.Tensor, seq_len: int | None, samples: int | None) -> list[torch.Tensor]:
    """pare's windows: every row, cut into windows of seq_len (the last may be shorter), first `samples`."""
    rows = ids if ids.dim() == 2 else ids[None]
    out: list[torch.Tensor] = []
    for row in rows:
        step = seq_len or row.numel()
        out += [row[i:i + step] for i in range(0, row.numel(), step)]
    return out[:samples] if samples else out


@dataclass
class Trial:
    run: list[int]
    similarity: float
    accepted: bool


@dataclass
class Walk:
    merges: list[list[int]]
    trials: list[Trial] = field(default_factory=list)
    layers: int = 0


class Reference:
    """The original model's final hidden states on the windows, and the similarity of any
    set of merges (memoised by the merges)."""

    def __init__(self, folder: Path, wins: list[torch.Tensor]):
        from transformers import AutoConfig

        self.folder = folder
        self.config = AutoConfig.from_pretrained(str(folder))
        assert self.config.model_type == "llama"
        self.layers = self.config.num_hidden_layers
        self.state = load_state(folder)
        self.windows = wins
        self.reference = self.final_states(self.state, self.layers)
        self.cache: dict[tuple, float] = {}

    @torch.no_grad()
    def final_states(self, sd: dict[str, torch.Tensor], layers: int) -> list[torch.Tensor]:
        """Final hidden states (after the final norm), float32, one tensor per window."""
        import transformers

        transformers.utils.logging.set_verbosity_error()
        config = type(self.config).from_dict(self.config.to_dict())
        config.num_hidden_layers = layers
        config.dtype = torch.float32
        model = transformers.LlamaForCausalLM(config).float().eval()
        missing, unexpected = model.load_state_dict({k: v.float() for k, v in sd.items()}, strict=False)
        assert not unexpected, unexpected
        assert set(missing) <= ({"lm_head.weight"} if config.tie_word_embeddings else set()), missing
        if config.tie_word_embeddings:
            model.tie_weights()
        assert all(p.dtype == torch.float32 for p in model.parameters())
        return [model.model(input_ids=w[None]).last_hidden_state[0] for w in self.windows]

    def similarity_of(self, states: list[torch.Tensor]) -> float:
        total = 0.0
        for a, b in zip(states, self.reference):
            total += torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0).item()
        return total / len(states)

    def similarity(self, merges: list[list[int]]) -> float:
        key = tuple(map(tuple, merges))
        if key not in self.cache:
            sd = merged_state(self.state, merges, self.layers)
            n = len(layout_of(merges, self.layers))
            self.cache[key] = self.similarity_of(self.final_states(sd, n))
        return self.cache[key]

    def search(self, target: int, span: int, interval: int, threshold: float) -> Walk:
        L = self.layers
        current = [[i] for i in range(L)]
        walk = Walk(merges=[])
        lay = max(0, L - 2 - min(span - 1, L - target))
        while lay >= 0 and len(current) > target:
            count = min(span - 1, len(current) - lay - 1, len(current) - target)
            if count <= 0:
                lay -= 1
                continue
            run = [i for r in current[lay:lay + count + 1] for i in r]
            candidate = sorted([m for m in walk.merges if not set(m) <= set(run)] + [run])
            sim = self.similarity(candidate)
            accepted = sim >= threshold
            walk.trials.append(Trial(run, sim, accepted))
            if accepted:
                walk.merges = candidate
                current = layout_of(candidate, L)
                lay -= interval
            else:
                lay -= 1
        walk.layers = len(current)
        return walk


# --------------------------------------------------------------------------- thresholds


@dataclass(frozen=True)
class Pick:
    """Threshold chosen from the computed similarities so the walk has at least `accepted`
    accepted and `refused` refused trials; `nested`: an accepted run takes in an earlier
    accepted run; `refused_then_accepted`: a refusal is followed by an acceptance."""

    accepted: int = 1
    refused: int = 1
    nested: bool = False
    refused_then_accepted: bool = False

    def fits(self, walk: Walk, threshold: float) -> bool:
        if any(abs(t.similarity - threshold) < MARGIN for t in walk.trials):
            return False
        acc = [t for t in walk.trials if t.accepted]
        if len(acc) < self.accepted or len(walk.trials) - len(acc) < self.refused:
            return False
        if self.nested and not any(
            set(a.run) < set(b.run) for i, a in enumerate(acc) for b in acc[i + 1:]
        ):
            return False
        if self.refused_then_accepted and not any(
            not a.accepted and b.accepted for a, b in zip(walk.trials, walk.trials[1:])
        ):
            return False
        return True


def pick_threshold(ref: Reference, pick: Pick, target: int, span: int, interval: int) -> float:
    ref.search(target, span, interval, -2.0)  # every trial accepted
    ref.search(target, span, interval, 2.0)  # every trial refused
    tried: set[float] = set()
    while True:
        pool = sorted(set(ref.cache.values()))
        candidates = [(a + b) / 2 for a, b in zip(pool, pool[1:]) if b - a >= 2 * MARGIN]
        fresh = [t for t in sorted(candidates, reverse=True) if t not in tried]
        if not fresh:
            pytest.fail(f"no threshold gives {pick} for target {target}, span {span}, interval {interval}; "
                        f"similarities {pool}", pytrace=False)
        for t in fresh:
            tried.add(t)
            if pick.fits(ref.search(target, span, interval, t), t):
                return round(t, 6)
        # the walks tried may have measured new similarities: go again with them


# --------------------------------------------------------------------------- models and tokens


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    return tmp_path_factory.mktemp("laco")


@functools.lru_cache(maxsize=None)
def _random_llama(folder: Path) -> Path:
    from safetensors.torch import save_file
    import transformers

    transformers.utils.logging.set_verbosity_error()
    torch.manual_seed(20240607)
    config = transformers.LlamaConfig(
        vocab_size=256, hidden_size=64, intermediate_size=128, num_hidden_layers=8, num_attention_heads=4,
        num_key_value_heads=2, head_dim=16, max_position_embeddings=128, rms_norm_eps=1e-6,
        initializer_range=0.02, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    )
    model = transformers.LlamaForCausalLM(config).float()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("norm.weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
    model.save_pretrained(str(folder))
    assert list(folder.glob("*.safetensors")) == [folder / "model.safetensors"]
    gen = torch.Generator().manual_seed(7)
    save_file({"input_ids": torch.randint(0, 256, (8, 32), generator=gen)}, str(folder.parent / "random-llama.tokens.safetensors"))
    return folder


@functools.lru_cache(maxsize=None)
def _trained_tokens(path: Path) -> Path:
    from safetensors.torch import load_file, save_file

    ids = load_file(str(CALIBRATION))["input_ids"]
    save_file({"input_ids": ids[:8].contiguous()}, str(path))
    return path


def model_and_tokens(work: Path, model: str) -> tuple[Path, Path]:
    if model == "trained-llama":
        return FIXTURES / "trained-llama", _trained_tokens(work / "trained-llama.first8.safetensors")
    if model == "trained-llama-full":
        return FIXTURES / "trained-llama", CALIBRATION
    if model == "random-llama":
        folder = _random_llama(work / "random-llama")
        return folder, folder.parent / "random-llama.tokens.safetensors"
    raise AssertionError(model)


_REFERENCES: dict[tuple, Reference] = {}


def reference(folder: Path, tokens: Path, seq_len: int | None, samples: int | None) -> Reference:
    from safetensors.torch import load_file

    key = (str(folder), str(tokens), seq_len, samples)
    if key not in _REFERENCES:
        _REFERENCES[key] = Reference(folder, windows(load_file(str(tokens))["input_ids"], seq_len, samples))
    return _REFERENCES[key]


# --------------------------------------------------------------------------- cases

# (id, model, target, span, interval, threshold, pare's window options)
# span / interval / threshold None: the flag is not passed (pare's default, 7 / 1 / 0.45).
CASES = [
    # trained-llama, 4 layers, bf16
    ("trained-t3-s2", "trained-llama", 3, 2, None, None, []),
    ("trained-t2-s2-samples8", "trained-llama-full", 2, 2, None, None, ["--samples", "8"]),
    ("trained-t2-s2-i2", "trained-llama", 2, 2, 2, None, []),
    ("trained-t1-s2-nested", "trained-llama", 1, 2, 1, 0.05, []),
    ("trained-t1-s2-accept-refuse", "trained-llama", 1, 2, 1, 0.5, []),
    ("trained-t1-span-default", "trained-llama", 1, None, None, 0.0, []),
    ("trained-t2-s2-seqlen48", "trained-llama-full", 2, 2, None, None, ["--seq-len", "48", "--samples", "8"]),
    ("trained-t2-s3-default-threshold", "trained-llama", 2, 3, None, None, []),  # 0.074 < 0.45: refused
    ("trained-t3-s2-threshold1", "trained-llama", 3, 2, None, 1.0, []),
    # random Llama, 8 layers, f32
    ("random-t4-s2-nested", "random-llama", 4, 2, 1, Pick(accepted=2, refused=1, nested=True), []),
    ("random-t4-s2-refuse-accept", "random-llama", 4, 2, 1, Pick(accepted=2, refused=1, refused_then_accepted=True), []),
    ("random-t3-s2-i2", "random-llama", 3, 2, 2, Pick(accepted=2, refused=1), []),
    ("random-t4-s3", "random-llama", 4, 3, 1, Pick(accepted=1, refused=1), []),
    ("random-t2-s3-i2", "random-llama", 2, 3, 2, Pick(accepted=2, refused=1), []),
    ("random-t2-s3-nested", "random-llama", 2, 3, 1, Pick(accepted=2, refused=1, nested=True), []),
    ("random-t5-defaults", "random-llama", 5, None, None, None, []),
    ("random-t4-s2-threshold1", "random-llama", 4, 2, 1, 1.0, []),
]


def _window_options(opts: list[str]) -> tuple[int | None, int | None]:
    seq_len = int(opts[opts.index("--seq-len") + 1]) if "--seq-len" in opts else None
    samples = int(opts[opts.index("--samples") + 1]) if "--samples" in opts else None
    return seq_len, samples


def _fmt(walk_trials) -> str:
    return "\n".join(f"  {t.run} {t.similarity:.6f} {'accepted' if t.accepted else 'refused'}" for t in walk_trials)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_laco_search(case, work):
    cid, model, target, span, interval, threshold, opts = case
    folder, tokens = model_and_tokens(work, model)
    seq_len, samples = _window_options(opts)
    ref = reference(folder, tokens, seq_len, samples)
    M = span or DEFAULT_SPAN
    I = interval or DEFAULT_INTERVAL
    if isinstance(threshold, Pick):
        T = pick_threshold(ref, threshold, target, M, I)
    else:
        T = DEFAULT_THRESHOLD if threshold is None else threshold
    want = ref.search(target, M, I, T)
    if not isinstance(threshold, Pick):
        near = [t for t in want.trials if abs(t.similarity - T) < SIM_TOL]
        assert not near, f"{cid}: a similarity is within {SIM_TOL} of threshold {T}; the decision is not testable:\n{_fmt(near)}"

    args = ["trim", folder, work / f"{cid}.out", "--merge-layers", "auto", "--target-layers", target,
            "--calibrate", "--tokens", tokens, *opts]
    if span is not None:
        args += ["--merge-span", span]
    if interval is not None:
        args += ["--merge-interval", interval]
    if isinstance(threshold, Pick) or threshold is not None:
        args += ["--threshold", repr(T)]
    out = work / f"{cid}.out"
    before_src = tree_digest(folder)
    before_work = sorted(p.name for p in work.iterdir())
    proc = run_pare(args)
    assert tree_digest(folder) == before_src, f"{folder} was modified"
    MEASURED[cid] = {"threshold": T, "ours": [[t.run, t.similarity, t.accepted] for t in want.trials]}

    if not want.merges:
        # nothing to keep: the refusal, and nothing written
        expect_error(proc, 1, "--merge-layers auto")
        assert not out.exists(), f"{out} written by a refused search"
        assert sorted(p.name for p in work.iterdir()) == before_work, "a refused search left files behind"
        assert all(not t.accepted for t in want.trials)
        return

    assert proc.returncode == 0, describe(proc) + "\nexpected trials:\n" + _fmt(want.trials)
    record = json.loads((out / "pare-trim.json").read_text())
    sel = record["selection"]["layers"]["merge"]
    got = [Trial(t["run"], t["similarity"], t["accepted"]) for t in sel["trials"]]
    MEASURED[cid]["pare"] = [[t.run, t.similarity, t.accepted] for t in got]
    table = "pare:\n" + _fmt(got) + "\nours:\n" + _fmt(want.trials)

    # the same walk
    assert [(t.run, t.accepted) for t in got] == [(t.run, t.accepted) for t in want.trials], table
    worst = max(abs(a.similarity - b.similarity) for a, b in zip(got, want.trials))
    MEASURED[cid]["max_similarity_diff"] = worst
    assert worst <= SIM_TOL, f"similarities differ by {worst:.3g} (> {SIM_TOL})\n{table}"
    for t in got:  # pare's own decisions follow its own numbers
        assert t.accepted == (t.similarity >= T), f"{t}: decision against threshold {T}\n{table}"

    # the record
    assert sel["criterion"] == "laco"
    assert (sel["span"], sel["interval"], sel["target_layers"]) == (M, I, target)
    assert sel["threshold"] == pytest.approx(T, abs=1e-12)
    assert sel["merges"] == want.merges, table
    assert sel["layers"] == want.layers == len(layout_of(want.merges, ref.layers))
    assert record["plan"]["merge"] == [{"layers": m, "norms": "first"} for m in want.merges]

    # the written model: our merged tensors
    expected = merged_state(ref.state, want.merges, ref.layers)
    written = read_tensors(out)
    assert sorted(written) == sorted(expected), (
        f"tensor names differ: only pare {sorted(set(written) - set(expected))}, "
        f"only ours {sorted(set(expected) - set(written))}"
    )
    worst_w = 0.0
    for name, want_t in expected.items():
        got_t = written[name].tensor
        assert got_t.dtype == want_t.dtype and list(got_t.shape) == list(want_t.shape), name
        if want_t.dtype == torch.float32:
            d = (got_t - want_t).abs().max().item() if want_t.numel() else 0.0
            worst_w = max(worst_w, d)
            assert d <= F32_TOL, f"{name}: max |pare − ours| = {d:.3g}"
        else:
            diff = (bits(got_t) != bits(want_t)).sum().item()
            assert diff == 0, f"{name}: {diff} of {want_t.numel()} values not bit-exact"
    MEASURED[cid]["max_weight_diff"] = worst_w

    # ... which transformers loads, and which computes the last accepted similarity
    loaded = load_model(out, torch.float32)
    assert loaded.config.num_hidden_layers == want.layers
    with torch.no_grad():
        states = [loaded.model(input_ids=w[None]).last_hidden_state[0] for w in ref.windows]
    final_sim = ref.similarity_of(states)
    last = [t for t in got if t.accepted][-1]
    MEASURED[cid]["written_model_similarity"] = final_sim
    assert abs(final_sim - last.similarity) <= SIM_TOL, (
        f"the written model's similarity {final_sim:.6f} is not the last accepted trial's {last.similarity:.6f}"
    )
    assert abs(final_sim - ref.similarity(want.merges)) <= 1e-6


def test_refusal_message_and_nothing_written(work):
    """threshold 1.0 on trained-llama: every trial refused → exit 1, one line naming
    --merge-layers auto, OUT absent."""
    folder, tokens = model_and_tokens(work, "trained-llama")
    out = work / "refused.out"
    proc = run_pare(["trim", folder, out, "--merge-layers", "auto", "--target-layers", "2", "--merge-span", "2",
                     "--threshold", "1.0", "--calibrate", "--tokens", tokens])
    expect_error(proc, 1, "--merge-layers auto")
    assert not out.exists()


def test_reference_walk_self_checks(work):
    """The re-implementation itself: merging nothing gives similarity 1; a two-layer merge is
    the upper layer's weights with the lower layer's norms, the layers above move down; with
    every trial accepted, span 2 grows one flat run from just below the final layer to 0."""
    folder, tokens = model_and_tokens(work, "random-llama")
    ref = reference(folder, tokens, None, None)
    assert ref.similarity([]) == pytest.approx(1.0, abs=1e-12)
    sd = merged_state(ref.state, [[5, 6]], ref.layers)
    # θ5 + (θ6 − θ5) is θ6 up to one float32 rounding
    merged, upper = sd["model.layers.5.mlp.up_proj.weight"], ref.state["model.layers.6.mlp.up_proj.weight"]
    assert not torch.equal(merged, ref.state["model.layers.5.mlp.up_proj.weight"])
    assert torch.allclose(merged, upper, rtol=0, atol=torch.finfo(torch.float32).eps * upper.abs().max().item())
    assert torch.equal(sd["model.layers.5.input_layernorm.weight"], ref.state["model.layers.5.input_layernorm.weight"])
    assert torch.equal(sd["model.layers.6.mlp.up_proj.weight"], ref.state["model.layers.7.mlp.up_proj.weight"])
    assert "model.layers.7.mlp.up_proj.weight" not in sd
    # span 2, every merge accepted: the window starts just below the final layer and grows
    # down to layer 0; the final layer is never merged, so two layers remain
    walk = ref.search(1, 2, 1, -2.0)
    L = ref.layers
    assert [t.run for t in walk.trials] == [list(range(L - 3 - k, L - 1)) for k in range(L - 2)]
    assert walk.layers == 2 and walk.merges == [list(range(L - 1))]
