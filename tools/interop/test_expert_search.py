"""NAEE's expert-subset search (`pare trim --experts N --score reconstruction --calibrate`)
against a brute force written here in torch.

For each MoE fixture (trained-moe: Mixtral layout, bf16 weights, its calibration windows;
qwen2-moe and qwen3-moe: random weights, a seeded random [4, 32] token file; and copies
of the two Qwen fixtures with `norm_topk_prob` flipped, so the renormalisation rule is
seen to follow the config and not the family) and every N with top-k <= N < E:

  - the MoE block inputs X are captured from transformers (float32, the original model)
    with a forward pre-hook on every sparse block;
  - every expert's output E_i(x_t) is computed in float64 from the checkpoint's own
    tensors (read by name from the safetensors file, not through transformers' fused
    parameters), routing likewise from the router weight: Z_t = sum_{i in top-k} w_i E_i,
    and for every subset S of N experts Z'_t from the softmax over S's logits, top-k among
    S, the same renormalisation rule; loss(S) = sum_t ||Z_t - Z'_t||^2 in float64;
  - the reference Z is first checked against the transformers block's own output (minus
    Qwen2-MoE's gated shared expert), so the weights and the routing rule read here are
    the ones transformers runs;
  - pare's `selection.expert_subsets` must list exactly the MoE layers, the C(E, N) subsets
    once each, every loss within 1e-4 relative of the reference, the ranking sorted by
    loss (ties lexicographic), the chosen subset = the reference's argmin = ranking[0],
    relative_loss = loss / sum_t ||Z_t||^2 (1e-4 relative), and `plan.experts` equal to
    the chosen subsets;
  - the trimmed model pare writes loads in transformers without any loading problem, its
    expert and router tensors are the kept ones bit for bit, and its sparse blocks, run
    in float64 on the same X, give sum ||orig(X) - trimmed(X)||^2 equal to pare's loss.

End to end on trained-moe: the reconstruction-chosen 2-expert model has a lower held-out
perplexity than the magnitude-chosen one.

Set PARE_EXPERT_SEARCH_REPORT=FILE to get every compared loss as JSON lines.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
import os
import shutil
from pathlib import Path

import pytest
import torch

from conftest import FIXTURES, REPO_ROOT, describe, load_model, read_tensors, run_pare

torch.set_num_threads(1)

CALIBRATION = REPO_ROOT / "Tests" / "Fixtures" / "calibration"
HELDOUT = REPO_ROOT / "Tests" / "Fixtures" / "heldout"
TOL = 1e-4  # relative, on every loss and on relative_loss

# name -> (fixture folder, config overrides, calibration file or None for seeded random ids)
CASES = {
    "trained-moe": ("trained-moe", {}, CALIBRATION / "trained-moe.safetensors"),
    "qwen2-moe": ("qwen2-moe", {}, None),
    "qwen3-moe": ("qwen3-moe", {}, None),
    "qwen2-moe+norm_topk_prob": ("qwen2-moe", {"norm_topk_prob": True}, None),
    "qwen3-moe-norm_topk_prob": ("qwen3-moe", {"norm_topk_prob": False}, None),
}


def _config(case: str) -> dict:
    fixture, overrides, _ = CASES[case]
    cfg = json.loads((FIXTURES / fixture / "config.json").read_text())
    cfg.update(overrides)
    return cfg


def _counts(cfg: dict) -> tuple[int, int]:
    e = cfg.get("num_local_experts", cfg.get("num_experts"))
    return int(e), int(cfg["num_experts_per_tok"])


def _renormalises(cfg: dict) -> bool:
    return cfg["model_type"] == "mixtral" or bool(cfg.get("norm_topk_prob", False))


PARAMS = [(case, n) for case in CASES for n in range(_counts(_config(case))[1], _counts(_config(case))[0])]


# --------------------------------------------------------------------------- inputs


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("expert-search")


def _model_folder(case: str, workdir: Path) -> Path:
    """The fixture itself, or a copy with the case's config overrides."""
    fixture, overrides, _ = CASES[case]
    if not overrides:
        return FIXTURES / fixture
    dst = workdir / f"model-{case}"
    if not dst.exists():
        shutil.copytree(FIXTURES / fixture, dst)
        (dst / "config.json").write_text(json.dumps(_config(case), indent=2) + "\n")
    return dst


def _tokens(case: str, workdir: Path) -> Path:
    _, _, calib = CASES[case]
    if calib is not None:
        return calib
    from safetensors.torch import save_file

    path = workdir / f"tokens-{case}.safetensors"
    if not path.exists():
        cfg = _config(case)
        gen = torch.Generator().manual_seed(20240607)
        ids = torch.randint(0, cfg["vocab_size"], (4, 32), generator=gen, dtype=torch.int64)
        save_file({"input_ids": ids}, str(path))
    return path


def _input_ids(path: Path) -> torch.Tensor:
    from safetensors.torch import load_file

    ids = load_file(str(path))["input_ids"].to(torch.int64)
    assert ids.dim() == 2
    return ids


# --------------------------------------------------------------------------- the reference


def _moe_blocks(model) -> dict[int, torch.nn.Module]:
    out = {}
    for i, layer in enumerate(model.model.layers):
        if hasattr(layer.mlp, "experts"):
            out[i] = layer.mlp
    return out


def _tensor_names(cfg: dict, layer: int, expert: int) -> tuple[str, str, str]:
    """(gate, up, down) tensor names of one routed expert in the checkpoint."""
    if cfg["model_type"] == "mixtral":
        p = f"model.layers.{layer}.block_sparse_moe.experts.{expert}"
        return f"{p}.w1.weight", f"{p}.w3.weight", f"{p}.w2.weight"
    p = f"model.layers.{layer}.mlp.experts.{expert}"
    return f"{p}.gate_proj.weight", f"{p}.up_proj.weight", f"{p}.down_proj.weight"


def _router_name(cfg: dict, layer: int) -> str:
    if cfg["model_type"] == "mixtral":
        return f"model.layers.{layer}.block_sparse_moe.gate.weight"
    return f"model.layers.{layer}.mlp.gate.weight"


def _routing(logits: torch.Tensor, cols: list[int], k: int, renorm: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Softmax over the logits of `cols` only, top-k among them, optional renormalisation.
    Returns (expert indices [n, k] in the original numbering, weights [n, k])."""
    sub = logits[:, cols]
    p = torch.softmax(sub, dim=-1)
    w, pos = torch.topk(p, k, dim=-1)
    if renorm:
        w = w / w.sum(-1, keepdim=True)
    idx = torch.tensor(cols, dtype=torch.int64)[pos]
    return idx, w


def _mix(outputs: torch.Tensor, idx: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """outputs [E, n, H]; sum_j w[t, j] * outputs[idx[t, j], t]."""
    n = outputs.shape[1]
    tok = torch.arange(n)
    z = torch.zeros(outputs.shape[1:], dtype=outputs.dtype)
    for j in range(idx.shape[1]):
        z += w[:, j, None] * outputs[idx[:, j], tok]
    return z


def _min_topk_gap(logits: torch.Tensor, cols: list[int], k: int) -> float:
    """Smallest gap, over tokens, between the k-th and (k+1)-th logit among `cols`: how close
    the reference's top-k came to a tie that float32 rounding could flip."""
    if len(cols) <= k:
        return math.inf
    s = torch.sort(logits[:, cols], dim=-1, descending=True).values
    return float((s[:, k - 1] - s[:, k]).min())


@functools.lru_cache(maxsize=None)
def _reference_cached(case: str, workdir_str: str) -> dict:
    workdir = Path(workdir_str)
    cfg = _config(case)
    folder = _model_folder(case, workdir)
    ids = _input_ids(_tokens(case, workdir))
    e, k = _counts(cfg)
    renorm = _renormalises(cfg)

    model = load_model(folder, torch.float32)
    assert bool(getattr(model.config, "norm_topk_prob", True)) == renorm or cfg["model_type"] == "mixtral"
    blocks = _moe_blocks(model)
    inputs: dict[int, list[torch.Tensor]] = {l: [] for l in blocks}
    outputs: dict[int, list[torch.Tensor]] = {l: [] for l in blocks}
    hooks = []
    for l, blk in blocks.items():
        hooks.append(blk.register_forward_pre_hook(lambda m, a, l=l: inputs[l].append(a[0].detach().clone())))
        hooks.append(blk.register_forward_hook(lambda m, a, o, l=l: outputs[l].append(o.detach().clone())))
    with torch.no_grad():
        for row in ids:  # one sequence per row, no padding
            model(input_ids=row[None], attention_mask=torch.ones_like(row[None]), use_cache=False)
    for h in hooks:
        h.remove()

    st = {name: rec.tensor for name, rec in read_tensors(folder).items()}
    layers = {}
    for l, blk in blocks.items():
        x32 = torch.cat([t.reshape(-1, t.shape[-1]) for t in inputs[l]])
        block_out = torch.cat([t.reshape(-1, t.shape[-1]) for t in outputs[l]]).double()
        x = x32.double()
        ys = []
        for i in range(e):
            g, u, d = (st[nm].double() for nm in _tensor_names(cfg, l, i))
            ys.append((torch.nn.functional.silu(x @ g.T) * (x @ u.T)) @ d.T)
        y = torch.stack(ys)  # [E, n, H]
        logits = x @ st[_router_name(cfg, l)].double().T  # [n, E]
        idx, w = _routing(logits, list(range(e)), k, renorm)
        z = _mix(y, idx, w)

        # The reference routed mixture must be what transformers' block computes.
        routed_tf = block_out
        if hasattr(blk, "shared_expert"):
            with torch.no_grad():
                shared = torch.sigmoid(blk.shared_expert_gate(x32)) * blk.shared_expert(x32)
            routed_tf = block_out - shared.double()
        scale = float(z.abs().max())
        diff = float((routed_tf - z).abs().max())
        assert diff <= 1e-4 * scale, (
            f"{case} layer {l}: the reference routed mixture differs from transformers' block output by "
            f"{diff:.3e} (max |Z| {scale:.3e}): the brute force does not compute what transformers runs")

        layers[l] = {"x32": x32, "y": y, "logits": logits, "z": z, "z_norm2": float((z * z).sum())}
    return {"cfg": cfg, "folder": folder, "ids": ids, "E": e, "k": k, "renorm": renorm, "layers": layers,
            "tokens": int(ids.numel())}


@pytest.fixture
def reference(workdir):
    return lambda case: _reference_cached(case, str(workdir))


def _subset_losses(ref: dict, layer: int, n: int) -> dict[tuple[int, ...], tuple[float, float]]:
    """{subset: (loss, min top-k logit gap among the subset)} for every subset of n experts."""
    L = ref["layers"][layer]
    out = {}
    for s in itertools.combinations(range(ref["E"]), n):
        idx, w = _routing(L["logits"], list(s), ref["k"], ref["renorm"])
        dz = L["z"] - _mix(L["y"], idx, w)
        out[s] = (float((dz * dz).sum()), _min_topk_gap(L["logits"], list(s), ref["k"]))
    return out


# --------------------------------------------------------------------------- running pare


def _report(record: dict) -> None:
    path = os.environ.get("PARE_EXPERT_SEARCH_REPORT")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def _trim(folder: Path, out: Path, n: int, score: str, tokens: Path | None) -> dict:
    args = ["trim", folder, out, "--experts", str(n), "--score", score, "--quiet"]
    if tokens is not None:
        args += ["--calibrate", "--tokens", tokens]
    proc = run_pare(args)
    assert proc.returncode == 0, describe(proc)
    return json.loads((out / "pare-trim.json").read_text())


def _rel(got: float, want: float) -> float:
    if got == want:
        return 0.0
    return abs(got - want) / abs(want) if want != 0 else math.inf


# --------------------------------------------------------------------------- the tests


@pytest.mark.parametrize("case,n", PARAMS, ids=[f"{c}-N{n}" for c, n in PARAMS])
def test_subset_losses_match_brute_force(case, n, reference, workdir, tmp_path):
    ref = reference(case)
    e, k = ref["E"], ref["k"]
    assert k <= n < e
    out = tmp_path / "out"
    trim = _trim(ref["folder"], out, n, "reconstruction", _tokens(case, workdir))

    sel = trim["selection"]
    assert sel["criteria"]["experts"] == "reconstruction", sel["criteria"]
    subsets = sel["expert_subsets"]
    assert [s["layer"] for s in subsets] == sorted(ref["layers"]), (
        f"{case}: pare searched layers {[s['layer'] for s in subsets]}, MoE layers are {sorted(ref['layers'])}")

    problems = []
    chosen = {}
    all_subsets = list(itertools.combinations(range(e), n))
    for entry in subsets:
        l = entry["layer"]
        want = _subset_losses(ref, l, n)
        z2 = ref["layers"][l]["z_norm2"]
        assert entry["search"] == "exhaustive", entry["search"]
        assert entry["evaluated"] == len(all_subsets) == math.comb(e, n), entry["evaluated"]
        ranking = entry["ranking"]
        got = {}
        for r in ranking:
            kept = tuple(r["kept"])
            assert list(kept) == sorted(set(kept)) and len(kept) == n and all(0 <= i < e for i in kept), (
                f"{case} layer {l}: malformed kept list {r['kept']}")
            assert kept not in got, f"{case} layer {l}: subset {kept} ranked twice"
            got[kept] = float(r["loss"])
        assert set(got) == set(all_subsets), (
            f"{case} layer {l}: pare ranked {sorted(got)}, expected all {len(all_subsets)} subsets")

        # Ranking: lowest loss first, ties in lexicographic order; the choice is its head.
        keys = [(float(r["loss"]), tuple(r["kept"])) for r in ranking]
        assert keys == sorted(keys), f"{case} layer {l}: ranking not sorted by (loss, kept): {keys}"
        assert list(entry["kept"]) == list(ranking[0]["kept"]), (entry["kept"], ranking[0])
        assert float(entry["loss"]) == float(ranking[0]["loss"]), (entry["loss"], ranking[0])

        for s in all_subsets:
            rel = _rel(got[s], want[s][0])
            _report({"case": case, "N": n, "layer": l, "kept": list(s), "pare": got[s], "torch": want[s][0],
                     "rel": rel, "min_topk_logit_gap": want[s][1], "sum_z2": z2})
            if not rel <= TOL:
                problems.append(f"layer {l} kept {list(s)}: pare {got[s]!r} vs torch {want[s][0]!r} "
                                f"(rel {rel:.3e}; smallest top-{k} logit gap among the subset {want[s][1]:.3e})")

        best = min(all_subsets, key=lambda s: (want[s][0], s))
        if tuple(entry["kept"]) != best:
            problems.append(f"layer {l}: pare chose {entry['kept']} (pare loss {got[tuple(entry['kept'])]!r}, "
                            f"torch {want[tuple(entry['kept'])][0]!r}), torch's argmin is {list(best)} "
                            f"(pare loss {got[best]!r}, torch {want[best][0]!r})")
        chosen[l] = list(entry["kept"])

        rl = float(entry["relative_loss"])
        rel_rl = _rel(rl, want[tuple(entry["kept"])][0] / z2)
        rel_self = _rel(rl, float(entry["loss"]) / z2)
        if not (rel_rl <= TOL and rel_self <= TOL):
            problems.append(f"layer {l}: relative_loss {rl!r}, torch {want[tuple(entry['kept'])][0] / z2!r} "
                            f"(rel {rel_rl:.3e}), pare loss / torch sum ||Z||^2 {float(entry['loss']) / z2!r} "
                            f"(rel {rel_self:.3e})")

    assert not problems, f"{case}, N={n}: " + "\n".join(problems)
    assert trim["plan"]["experts"] == {str(l): kept for l, kept in chosen.items()}, (
        trim["plan"]["experts"], chosen)

    _check_trimmed_model(case, ref, out, chosen, n, {s["layer"]: float(s["loss"]) for s in subsets})


def _check_trimmed_model(case: str, ref: dict, out: Path, chosen: dict, n: int, pare_loss: dict) -> None:
    """The written model holds the kept experts and router rows bit for bit, loads in
    transformers, and its sparse blocks reproduce pare's loss on the original inputs."""
    from transformers import AutoModelForCausalLM

    cfg = ref["cfg"]
    new_cfg = json.loads((out / "config.json").read_text())
    assert _counts(new_cfg) == (n, ref["k"]), new_cfg

    src = read_tensors(ref["folder"])
    dst = read_tensors(out)
    for l, kept in chosen.items():
        for j, i in enumerate(kept):
            for a, b in zip(_tensor_names(cfg, l, i), _tensor_names(cfg, l, j)):
                assert dst[b].dtype == src[a].dtype and torch.equal(dst[b].tensor, src[a].tensor), (
                    f"{case}: {b} is not the original {a}")
        assert torch.equal(dst[_router_name(cfg, l)].tensor, src[_router_name(cfg, l)].tensor[kept]), (
            f"{case}: layer {l} router rows are not {kept}")
        for j in range(n, ref["E"]):
            assert _tensor_names(cfg, l, j)[0] not in dst, f"{case}: layer {l} still has expert {j}"

    load_model(out, torch.float32)  # no missing / unexpected / mismatched weights
    kw = {"dtype": torch.float64, "experts_implementation": "eager"}
    orig = AutoModelForCausalLM.from_pretrained(str(ref["folder"]), **kw).eval()
    trimmed = AutoModelForCausalLM.from_pretrained(str(out), **kw).eval()
    ob, tb = _moe_blocks(orig), _moe_blocks(trimmed)
    assert sorted(tb) == sorted(ob) == sorted(chosen)
    problems = []
    for l in chosen:
        x = ref["layers"][l]["x32"].double()[None]
        with torch.no_grad():
            d = ob[l](x) - tb[l](x)
        loss_tf = float((d * d).sum())
        rel = _rel(float(pare_loss[l]), loss_tf)
        _report({"case": case, "N": n, "layer": l, "kept": chosen[l], "pare": float(pare_loss[l]),
                 "transformers_trimmed": loss_tf, "rel": rel})
        if not rel <= TOL:
            problems.append(f"layer {l} kept {chosen[l]}: pare loss {float(pare_loss[l])!r} vs "
                            f"||orig(X) - trimmed(X)||^2 in transformers {loss_tf!r} (rel {rel:.3e})")
    assert not problems, f"{case}, N={n}: " + "\n".join(problems)


def _perplexity(folder: Path) -> float:
    from safetensors.torch import load_file

    ids = load_file(str(HELDOUT / "trained-moe.safetensors"))["input_ids"]
    model = load_model(folder, torch.float32)
    with torch.no_grad():
        losses = [model(input_ids=w[None], labels=w[None]).loss.item() for w in ids]
    return math.exp(sum(losses) / len(losses))


def test_reconstruction_beats_magnitude_on_heldout_perplexity(tmp_path):
    folder = FIXTURES / "trained-moe"
    rec = _trim(folder, tmp_path / "rec", 2, "reconstruction", CALIBRATION / "trained-moe.safetensors")
    mag = _trim(folder, tmp_path / "mag", 2, "magnitude", None)
    assert rec["plan"]["experts"] != mag["plan"]["experts"], "both criteria kept the same experts"
    p_rec, p_mag = _perplexity(tmp_path / "rec"), _perplexity(tmp_path / "mag")
    p_full = _perplexity(folder)
    _report({"case": "heldout-perplexity", "reconstruction": p_rec, "magnitude": p_mag, "original": p_full,
             "plans": {"reconstruction": rec["plan"]["experts"], "magnitude": mag["plan"]["experts"]}})
    assert math.isfinite(p_rec) and math.isfinite(p_mag)
    assert p_full < p_rec < p_mag, (
        f"held-out perplexity: original {p_full:.2f}, reconstruction {p_rec:.2f} ({rec['plan']['experts']}), "
        f"magnitude {p_mag:.2f} ({mag['plan']['experts']})")
