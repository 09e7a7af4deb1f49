"""pare sparsify against the reference (tools/sparse_reference.py: numpy/torch, written
independently of pare's Swift code) and against the real consumers.

The layouts these tests hold pare to are described in tools/interop/SPARSE_FORMATS.md.

  - dense: for every fixture and the patterns 2:4, 4:8, 1:4, with the magnitude and the
    wanda score (statistics from a real calibration pass, collect_input_norms), pare's
    tensors equal the reference mask applied to the input, bit for bit: exactly the
    default targets change, every other tensor keeps its bytes; transformers loads the
    output and its logits equal those of the reference sparse model;
  - compressed-tensors: under .venv-ct ($PARE_CT_PYTHON: transformers 4.57 +
    compressed-tensors 0.14.0.1), tools/interop/ct_check.py decompresses pare's output
    with the package's own decompressor (bit-exact against the dense reference), loads
    it with transformers 4.57 (every weight bit-exact, logits equal to the reference's),
    and compresses the reference with the package's own compressor: pare's files and
    quantization_config must be what the package writes;
  - cutlass: `.values`/`.meta` equal torch's sparse_semi_structured_from_dense_cutlass of
    the dense reference, bit for bit, for bf16 and f16; tools/load_cutlass.py rebuilds the
    dense weights on a CPU;
  - refusals: GPT-2 Conv1D with compressed-tensors / cutlass, patterns that are not 2:4
    compatible with those formats, CUTLASS's size and dtype rules, bad patterns, wanda
    without statistics or with incomplete ones.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import (
    FIXTURES,
    REPO_ROOT,
    convert,
    describe,
    expect_error,
    forward,
    load_model,
    model_inputs,
    read_tensors,
    run_pare,
    tree_digest,
)

sys.path.insert(0, str(REPO_ROOT / "tools"))
import load_cutlass  # noqa: E402
import make_sparse_fixtures  # noqa: E402
import sparse_reference as R  # noqa: E402

ALL = ["llama-gqa-f32", "llama-gqa-bf16", "llama-sharded", "qwen3", "mixtral", "qwen2-moe", "gpt2", "bert"]
PATTERNS = ["2:4", "4:8", "1:4"]
CT_FIXTURES = [f for f in ALL if f != "gpt2"]  # GPT-2's Conv1D is no nn.Linear: refused
PAIR_PATTERNS = ["2:4", "1:4"]  # 2:4-compatible: at most 2 kept in every aligned group of 4
PROVENANCE = "pare-sparsify.json"
CT_CHECK = REPO_ROOT / "tools" / "interop" / "ct_check.py"


# --------------------------------------------------------------------------- helpers


def ct_python() -> Path:
    env = os.environ.get("PARE_CT_PYTHON")
    p = Path(env) if env else REPO_ROOT / ".venv-ct" / "bin" / "python"
    if not p.is_file():
        pytest.fail(f"no compressed-tensors venv python at {p}: run tools/test.sh (it builds .venv-ct from "
                    "tools/requirements-ct.txt) or set PARE_CT_PYTHON", pytrace=False)
    return p


def first_difference(a: torch.Tensor, b: torch.Tensor) -> str:
    x, y = a.reshape(-1), b.reshape(-1)
    ints = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}
    bad = (x.contiguous().view(ints[x.element_size()]) != y.contiguous().view(ints[y.element_size()])).nonzero()
    i = int(bad[0])
    return f"first of {bad.numel()} differences at flat index {i}: pare {x[i].item()!r}, reference {y[i].item()!r}"


def assert_same_tensors(ours: dict, expected: dict, what: str, targets=()) -> None:
    """ours: conftest TensorRecords; expected: {name: torch.Tensor}. Same names, dtypes,
    shapes and bytes."""
    extra, missing = sorted(set(ours) - set(expected)), sorted(set(expected) - set(ours))
    assert not extra and not missing, f"{what}: unexpected tensors {extra[:8]}, missing {missing[:8]}"
    targets = set(targets)
    for name, want in expected.items():
        rec = ours[name]
        got = rec.tensor
        role = "target" if name in targets else "non-target"
        assert got.dtype == want.dtype and list(got.shape) == list(want.shape), (
            f"{what}: {name} ({role}) is {rec.dtype}{rec.shape}, reference {want.dtype}{list(want.shape)}")
        if rec.raw() != want.contiguous().view(torch.uint8).reshape(-1).numpy().tobytes():
            pytest.fail(f"{what}: {name} ({role}) differs: {first_difference(got, want)}", pytrace=False)


def expect_refusal(proc: subprocess.CompletedProcess, out: Path, *fragments: str) -> None:
    """Refused either as a usage error (64) or as bad input (1, one `pare: error:` line);
    nothing written."""
    assert proc.returncode in (1, 64), describe(proc)
    if proc.returncode == 1:
        expect_error(proc, 1, *fragments)
    else:
        assert proc.stderr.strip(), describe(proc)
        for frag in fragments:
            assert frag in proc.stderr, f"expected {frag!r} in stderr\n" + describe(proc)
    assert not out.exists(), f"{out} was written by a refused run"


# --------------------------------------------------------------------------- session state


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sparsify")


@pytest.fixture(scope="session")
def extra_models(work) -> dict[str, Path]:
    """Models the committed fixtures cannot stand for: llama-2of4-bf16 (CUTLASS-sized, with
    groups of exact zeros; tools/make_sparse_fixtures.py) and its f16 copy made by
    `pare convert --dtype f16`."""
    root = work / "models"
    (bf16,) = make_sparse_fixtures.build_all(root)
    f16 = root / "llama-2of4-f16"
    convert(bf16, f16, "--dtype", "f16", "--quiet")
    return {"llama-2of4-bf16": bf16, "llama-2of4-f16": f16}


def model_dir(name: str, extra: dict) -> Path:
    return extra[name] if name in extra else FIXTURES / name


@pytest.fixture(scope="session")
def stats(work):
    """Wanda statistics of a fixture: a real calibration pass (collect_input_norms through
    forward hooks) over the default targets, written as pare reads them."""
    cache = {}

    def get(fixture: str) -> Path:
        if fixture not in cache:
            norms = R.folder_norms(FIXTURES / fixture)
            path = work / f"{fixture}.stats.safetensors"
            save_file(dict(norms), str(path), metadata={"format": "pt"})
            cache[fixture] = path
        return cache[fixture]

    return get


@pytest.fixture(scope="session")
def sparsify(work):
    """Runs `pare sparsify` once per distinct request; returns (proc, out). Checks, for
    every successful run, that the input was not touched and that OUT holds config.json
    and pare-sparsify.json."""
    cache = {}

    def run(src: Path, *flags: str):
        key = (str(src), flags)
        if key not in cache:
            out = work / "out" / f"run{len(cache)}"
            out.parent.mkdir(exist_ok=True)
            before = tree_digest(src)
            proc = run_pare(["sparsify", src, out, *flags, "--quiet"])
            assert tree_digest(src) == before, f"pare sparsify modified its input {src}"
            if proc.returncode == 0:
                assert (out / "config.json").is_file(), f"no config.json in {out}"
                assert (out / PROVENANCE).is_file(), f"no {PROVENANCE} in {out}"
                assert isinstance(json.loads((out / PROVENANCE).read_text()), dict)
            cache[key] = (proc, out)
        return cache[key]

    return run


def ok(result) -> Path:
    proc, out = result
    assert proc.returncode == 0, describe(proc)
    return out


@functools.lru_cache(maxsize=None)
def reference(src: str, pattern: str, stats_path: str | None = None, targets=None, ignore=None):
    """(reference {name: tensor} of `pare sparsify --format dense`, target names)."""
    tensors, _ = R.read_folder(src)
    n, m = R.parse_pattern(pattern)
    norms = R.load_stats(stats_path) if stats_path else None
    return R.sparsify_state_dict(tensors, R.model_type_of(src), n, m, norms, targets, ignore)


def write_reference(src: Path, pattern: str, dst: Path, stats_path=None) -> Path:
    if not dst.exists():
        out, _ = reference(str(src), pattern, str(stats_path) if stats_path else None)
        _, where = R.read_folder(src)
        R.write_like(src, dst, out, where)
    return dst


# --------------------------------------------------------------------------- dense


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("fixture", ALL)
def test_dense_equals_the_reference_mask(sparsify, fixture, pattern):
    out = ok(sparsify(FIXTURES / fixture, "--pattern", pattern))
    expected, targets = reference(str(FIXTURES / fixture), pattern)
    assert targets, "the reference found no default target"
    assert_same_tensors(read_tensors(out), expected, f"{fixture} {pattern}", targets)
    src_config = json.loads((FIXTURES / fixture / "config.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config, "dense output must not carry a sparsity_config"
    assert {k: config.get(k) for k in src_config} == src_config, "config.json changed"


@pytest.mark.parametrize("pattern", PATTERNS)
@pytest.mark.parametrize("fixture", ALL)
def test_wanda_equals_the_reference_mask(sparsify, stats, fixture, pattern):
    stats_path = stats(fixture)
    out = ok(sparsify(FIXTURES / fixture, "--pattern", pattern, "--score", "wanda", "--stats", stats_path))
    expected, targets = reference(str(FIXTURES / fixture), pattern, str(stats_path))
    magnitude, _ = reference(str(FIXTURES / fixture), pattern)
    assert any(not torch.equal(expected[t], magnitude[t]) for t in targets), \
        "the statistics do not change the reference's choice: the test would prove nothing"
    assert_same_tensors(read_tensors(out), expected, f"{fixture} {pattern} wanda", targets)


@pytest.mark.parametrize("fixture", ALL)
def test_transformers_loads_dense_output_with_the_reference_logits(sparsify, work, fixture):
    out = ok(sparsify(FIXTURES / fixture, "--pattern", "2:4"))
    ref = write_reference(FIXTURES / fixture, "2:4", work / "ref" / f"{fixture}-2of4")
    logits, hidden = forward(load_model(out))
    ref_logits, ref_hidden = forward(load_model(ref))
    assert torch.equal(logits, ref_logits)
    assert torch.equal(hidden, ref_hidden)
    original, _ = forward(load_model(FIXTURES / fixture))
    assert not torch.equal(original, logits), "2:4 sparsity left the logits unchanged: nothing was pruned?"


def test_wanda_output_loads_with_the_reference_logits(sparsify, stats, work):
    fixture = "qwen2-moe"
    out = ok(sparsify(FIXTURES / fixture, "--pattern", "2:4", "--score", "wanda", "--stats", stats(fixture)))
    ref = write_reference(FIXTURES / fixture, "2:4", work / "ref" / f"{fixture}-2of4-wanda", stats(fixture))
    assert torch.equal(forward(load_model(out))[0], forward(load_model(ref))[0])


@pytest.mark.parametrize("flags,targets,ignore", [
    (["--ignore", "mlp"], None, "mlp"),
    (["--targets", r"self_attn\.(q|k)_proj"], r"self_attn\.(q|k)_proj", None),
    (["--targets", "lm_head|down_proj", "--ignore", r"layers\.1\."], "lm_head|down_proj", r"layers\.1\."),
])
def test_targets_and_ignore(sparsify, flags, targets, ignore):
    fixture = FIXTURES / "llama-gqa-f32"
    out = ok(sparsify(fixture, "--pattern", "2:4", *flags))
    expected, names = reference(str(fixture), "2:4", None, targets, ignore)
    assert names
    assert_same_tensors(read_tensors(out), expected, " ".join(flags), names)


# --------------------------------------------------------------------------- compressed-tensors


def ct_expected_layout(src_tensors: dict, targets: list[str]) -> dict[str, tuple[torch.dtype, list]]:
    """{name: (dtype, shape)} of a sparse-24-bitmask folder (SPARSE_FORMATS.md)."""
    layout = {}
    for name, t in src_tensors.items():
        if name in targets:
            prefix = name[: -len(".weight")]
            rows, cols = t.shape
            layout[prefix + ".compressed"] = (t.dtype, [rows, cols // 2])
            layout[prefix + ".bitmask"] = (torch.uint8, [rows, (cols + 7) // 8])
            layout[prefix + ".shape"] = (torch.int64, [2, 1])
        else:
            layout[name] = (t.dtype, list(t.shape))
    return layout


CT_CASES = [(f, p) for f in CT_FIXTURES + ["llama-2of4-bf16"] for p in PAIR_PATTERNS]


@pytest.fixture(scope="session")
def ct_results(sparsify, extra_models, work):
    """Runs pare for every compressed-tensors case, then ct_check.py once under .venv-ct
    for all of them. {(fixture, pattern): (proc, out, result or None)}."""
    python = ct_python()
    jobs, runs = [], {}
    for fixture, pattern in CT_CASES:
        src = model_dir(fixture, extra_models)
        proc, out = sparsify(src, "--pattern", pattern, "--format", "compressed-tensors")
        runs[(fixture, pattern)] = (proc, out)
        if proc.returncode != 0:
            continue
        tag = f"{fixture}-{pattern.replace(':', 'of')}"
        ref = write_reference(src, pattern, work / "ref" / tag)
        model = load_model(ref)
        inputs = model_inputs(model.config)
        with torch.no_grad():
            logits = model(**inputs).logits
        np.save(work / f"{tag}.ids.npy", inputs["input_ids"].numpy())
        np.save(work / f"{tag}.logits.npy", logits.float().numpy())
        dtype = next(t.dtype for t in R.read_folder(src)[0].values() if t.dim() == 2)
        jobs.append({
            "id": tag, "folder": str(out), "reference": str(ref),
            "inputs": str(work / f"{tag}.ids.npy"), "logits": str(work / f"{tag}.logits.npy"),
            "logits_tol": 1e-4 if dtype == torch.float32 else 5e-2, "compare_writer": True,
        })
    results = {}
    if jobs:
        (work / "ct-jobs.json").write_text(json.dumps(jobs, indent=1))
        env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
        proc = subprocess.run([str(python), str(CT_CHECK), str(work / "ct-jobs.json")],
                              capture_output=True, text=True, timeout=1200, env=env)
        assert proc.returncode == 0, f"ct_check.py broke:\n{proc.stderr[-4000:]}"
        results = json.loads(proc.stdout)
    return {key: (proc, out, results.get(f"{key[0]}-{key[1].replace(':', 'of')}")) for key, (proc, out) in runs.items()}


@pytest.mark.parametrize("fixture,pattern", CT_CASES, ids=[f"{f}-{p}" for f, p in CT_CASES])
def test_compressed_tensors_layout(ct_results, extra_models, fixture, pattern):
    proc, out, _ = ct_results[(fixture, pattern)]
    assert proc.returncode == 0, describe(proc)
    src = model_dir(fixture, extra_models)
    src_tensors, _ = R.read_folder(src)
    _, targets = reference(str(src), pattern)
    layout = ct_expected_layout(src_tensors, targets)
    ours = read_tensors(out)
    assert sorted(ours) == sorted(layout), (
        f"tensor names: unexpected {sorted(set(ours) - set(layout))[:8]}, missing {sorted(set(layout) - set(ours))[:8]}")
    for name, (dtype, shape) in layout.items():
        assert (ours[name].tensor.dtype, ours[name].shape) == (dtype, shape), name
        if name in src_tensors:
            assert ours[name].raw() == src_tensors[name].contiguous().view(torch.uint8).reshape(-1).numpy().tobytes(), \
                f"non-target {name} changed"
    q = json.loads((out / "config.json").read_text())["quantization_config"]
    assert q["quant_method"] == "compressed-tensors"
    assert q["version"] == "0.14.0.1"
    sc = q["sparsity_config"]
    assert sc["format"] == "sparse-24-bitmask" and sc["sparsity_structure"] == "2:4"
    assert sc.get("targets"), "sparsity_config.targets is empty: compressed-tensors would decompress nothing"


@pytest.mark.parametrize("fixture,pattern", CT_CASES, ids=[f"{f}-{p}" for f, p in CT_CASES])
def test_compressed_tensors_decompresses_loads_and_matches_its_own_writer(ct_results, fixture, pattern):
    proc, _, result = ct_results[(fixture, pattern)]
    assert proc.returncode == 0, describe(proc)
    assert result is not None, "ct_check.py returned no result for this case"
    assert result["errors"] == [], "\n".join(result["errors"])


# --------------------------------------------------------------------------- cutlass


CUTLASS_CASES = [(m, p) for m in ("llama-2of4-bf16", "llama-2of4-f16") for p in PAIR_PATTERNS]


@pytest.mark.parametrize("model,pattern", CUTLASS_CASES, ids=[f"{m}-{p}" for m, p in CUTLASS_CASES])
def test_cutlass_equals_torchs_conversion(sparsify, extra_models, model, pattern):
    src = extra_models[model]
    out = ok(sparsify(src, "--pattern", pattern, "--format", "cutlass"))
    dense, targets = reference(str(src), pattern)
    expected = {}
    for name, t in dense.items():
        if name in targets:
            values, meta = R.cutlass_pack(t)
            expected[name + ".values"] = values
            expected[name + ".meta"] = meta
        else:
            expected[name] = t
    assert_same_tensors(read_tensors(out), expected, f"{model} {pattern} cutlass")


@pytest.mark.parametrize("model,pattern", CUTLASS_CASES, ids=[f"{m}-{p}" for m, p in CUTLASS_CASES])
def test_cutlass_output_rebuilds_the_dense_reference_on_cpu(sparsify, extra_models, work, model, pattern):
    src = extra_models[model]
    out = ok(sparsify(src, "--pattern", pattern, "--format", "cutlass"))
    dense, targets = reference(str(src), pattern)
    state, _ = load_cutlass.dense_state(out)
    assert sorted(state) == sorted(dense)
    for name, want in dense.items():
        assert state[name].dtype == want.dtype, name
        assert torch.equal(state[name].view(torch.int16), want.view(torch.int16)), name
    rebuilt = work / "rebuilt" / f"{model}-{pattern.replace(':', 'of')}"
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "load_cutlass.py"), str(out), "--dense-out", str(rebuilt)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    ref = write_reference(src, pattern, work / "ref" / f"{model}-{pattern.replace(':', 'of')}")
    assert torch.equal(forward(load_model(rebuilt))[0], forward(load_model(ref))[0])


def test_load_cutlass_rebuilds_torchs_own_packing(extra_models, tmp_path):
    """The loader itself, on a folder packed by torch (independent of pare)."""
    src = extra_models["llama-2of4-bf16"]
    dense, targets = reference(str(src), "2:4")
    packed = {}
    for name, t in dense.items():
        if name in targets:
            packed[name + ".values"], packed[name + ".meta"] = R.cutlass_pack(t)
        else:
            packed[name] = t
    folder = tmp_path / "torch-cutlass"
    folder.mkdir()
    (folder / "config.json").write_text((src / "config.json").read_text())
    save_file(packed, str(folder / "model.safetensors"), metadata={"format": "pt"})
    state, _ = load_cutlass.dense_state(folder)
    assert sorted(state) == sorted(dense)
    for name in dense:
        assert torch.equal(state[name].view(torch.int16), dense[name].view(torch.int16)), name
    if not torch.cuda.is_available():
        proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "load_cutlass.py"), str(folder)],
                              capture_output=True, text=True, timeout=300)
        assert proc.returncode == 2 and "CUDA" in proc.stderr and "--dense-out" in proc.stderr, proc.stderr


def test_cutlass_refuses_weights_below_its_minimum_shape(sparsify):
    # llama-gqa-bf16's down_proj is [64, 96]: 96 is not a multiple of 64.
    proc, out = sparsify(FIXTURES / "llama-gqa-bf16", "--pattern", "2:4", "--format", "cutlass")
    expect_refusal(proc, out, "down_proj")


def test_cutlass_refuses_f32(sparsify):
    proc, out = sparsify(FIXTURES / "llama-gqa-f32", "--pattern", "2:4", "--format", "cutlass")
    expect_refusal(proc, out)


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("fmt", ["compressed-tensors", "cutlass"])
def test_gpt2_conv1d_is_refused_for_packed_formats(sparsify, fmt):
    proc, out = sparsify(FIXTURES / "gpt2", "--pattern", "2:4", "--format", fmt)
    expect_error(proc, 1)
    assert not out.exists()


@pytest.mark.parametrize("fmt", ["compressed-tensors", "cutlass"])
@pytest.mark.parametrize("pattern", ["4:8", "3:4"])
def test_patterns_that_are_not_2of4_are_refused_for_packed_formats(sparsify, extra_models, fmt, pattern):
    proc, out = sparsify(extra_models["llama-2of4-bf16"], "--pattern", pattern, "--format", fmt)
    expect_refusal(proc, out)


@pytest.mark.parametrize("pattern", ["3:2", "2:17", "abc", "4:4", "0:4", "2:4:8", ""])
def test_bad_patterns_are_usage_errors(tmp_path, pattern):
    proc = run_pare(["sparsify", FIXTURES / "llama-gqa-f32", tmp_path / "out", "--pattern", pattern])
    assert proc.returncode == 64, describe(proc)
    assert not (tmp_path / "out").exists()


def test_wanda_without_stats_is_refused(tmp_path):
    proc = run_pare(["sparsify", FIXTURES / "llama-gqa-f32", tmp_path / "out", "--pattern", "2:4", "--score", "wanda"])
    expect_refusal(proc, tmp_path / "out", "--stats")


def test_stats_missing_a_tensor_names_it(stats, tmp_path):
    from safetensors.torch import load_file

    norms = load_file(str(stats("llama-gqa-f32")))
    gone = "model.layers.1.mlp.down_proj.weight.input_norm"
    del norms[gone]
    path = tmp_path / "partial.safetensors"
    save_file(norms, str(path), metadata={"format": "pt"})
    proc = run_pare(["sparsify", FIXTURES / "llama-gqa-f32", tmp_path / "out", "--pattern", "2:4",
                     "--score", "wanda", "--stats", path])
    expect_error(proc, 1, "model.layers.1.mlp.down_proj.weight")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("length", [95, 97, 64])
def test_stats_tensor_of_the_wrong_length_is_refused(stats, tmp_path, length):
    from safetensors.torch import load_file

    norms = load_file(str(stats("llama-gqa-f32")))
    name = "model.layers.0.mlp.down_proj.weight.input_norm"  # in_features 96
    norms[name] = torch.ones(length, dtype=torch.float32)
    path = tmp_path / "bad.safetensors"
    save_file(norms, str(path), metadata={"format": "pt"})
    proc = run_pare(["sparsify", FIXTURES / "llama-gqa-f32", tmp_path / "out", "--pattern", "2:4",
                     "--score", "wanda", "--stats", path])
    expect_error(proc, 1, "model.layers.0.mlp.down_proj.weight")
    assert not (tmp_path / "out").exists()


def test_dry_run_writes_nothing(tmp_path):
    out = tmp_path / "out"
    proc = run_pare(["sparsify", FIXTURES / "mixtral", out, "--pattern", "2:4", "--dry-run"])
    assert proc.returncode == 0, describe(proc)
    assert not out.exists()
    proc = run_pare(["sparsify", FIXTURES / "mixtral", out, "--pattern", "2:4", "--dry-run", "--json"])
    assert proc.returncode == 0, describe(proc)
    assert isinstance(json.loads(proc.stdout), dict)
    assert not out.exists() and list(tmp_path.iterdir()) == []
