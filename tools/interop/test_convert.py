"""`pare convert` on every fixture, checked by safetensors, torch and transformers."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import (
    CONFIG_DTYPES,
    FIXTURE_NAMES,
    FIXTURES,
    FLOAT_ST_DTYPES,
    INDEX_NAME,
    ST_DTYPES,
    TORCH_DTYPES,
    assert_cast_exact,
    content_digest,
    convert,
    file_metadata,
    forward,
    load_model,
    other_files,
    read_tensors,
    reference_outputs,
    sha256,
    weight_files,
)

DTYPE_KEYS = ("torch_dtype", "dtype")

# Logit tolerance against `from_pretrained(orig).to(dtype)`. That model differs from a
# checkpoint saved in `dtype` only in non-persistent buffers (e.g. rotary inv_freq, which
# `.to()` casts but `from_pretrained(dtype=...)` keeps in f32), so the logits are close,
# not equal. Bit-equality is asserted against `from_pretrained(orig, dtype=...)`.
# The tolerance scales with the largest logit once that exceeds 1: a trained fixture's
# logits reach ~10, where one bf16 step is already 0.0625.
TO_DTYPE_TOL = {"f32": 0.0, "f16": 5e-3, "bf16": 3e-2}


def assert_single_file_output(out):
    names = sorted(p.name for p in out.iterdir())
    assert "model.safetensors" in names, f"no model.safetensors in {names}"
    assert INDEX_NAME not in names, "unexpected shard index for a single-file output"
    assert [p.name for p in weight_files(out)] == ["model.safetensors"]


def assert_same_listing(src, out):
    """OUT holds exactly the other files of SRC plus the weight files (no leftovers)."""
    expected_other = other_files(src)
    got = sorted(p.name for p in out.iterdir())
    got_other = [n for n in got if not n.endswith(".safetensors") and n != INDEX_NAME]
    assert got_other == expected_other, f"other files: got {got_other}, expected {expected_other}"
    hidden = [n for n in got if n.startswith(".")]
    assert not hidden, f"hidden files left in output: {hidden}"


def assert_pt_metadata(out):
    for f in weight_files(out):
        assert file_metadata(f) == {"format": "pt"}, f"{f.name}: __metadata__ is {file_metadata(f)}"


def assert_order_preserved(src_tensors, out_tensors):
    assert list(out_tensors) == list(src_tensors), "output tensor order differs from input order"


# --------------------------------------------------------------------------- (a) plain copy


@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
def test_convert_without_dtype_is_lossless(fixture, tmp_path):
    src = FIXTURES / fixture
    out = tmp_path / "out"
    convert(src, out)

    assert_single_file_output(out)  # default --max-shard-size 5GB; the fixtures are tiny
    assert_same_listing(src, out)
    for name in other_files(src):
        assert sha256(out / name) == sha256(src / name), f"{name} is not byte-identical"
    assert_pt_metadata(out)

    src_t, out_t = read_tensors(src), read_tensors(out)
    assert set(out_t) == set(src_t)
    assert_order_preserved(src_t, out_t)
    for name, a in src_t.items():
        b = out_t[name]
        assert (b.dtype, b.shape) == (a.dtype, a.shape), name
        assert b.raw() == a.raw(), f"{name}: bytes differ"

    logits, hidden = forward(load_model(out))
    ref_logits, ref_hidden = reference_outputs(fixture)
    assert torch.equal(logits, ref_logits), "logits differ from the original checkpoint"
    assert torch.equal(hidden, ref_hidden), "hidden states differ from the original checkpoint"


# --------------------------------------------------------------------------- (b) casts


def expected_config(src_config: dict, dtype: str) -> dict:
    cfg = dict(src_config)
    for key in DTYPE_KEYS:
        if key in cfg:
            cfg[key] = CONFIG_DTYPES[dtype]
    return cfg


@pytest.mark.parametrize("dtype", ["f16", "bf16", "f32"])
@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
def test_convert_dtype(fixture, dtype, tmp_path):
    src = FIXTURES / fixture
    out = tmp_path / "out"
    convert(src, out, "--dtype", dtype)

    assert_single_file_output(out)
    assert_same_listing(src, out)
    assert_pt_metadata(out)

    # config.json: dtype keys rewritten where present, everything else (and the key order) kept.
    src_cfg = json.loads((src / "config.json").read_text())
    out_cfg = json.loads((out / "config.json").read_text())
    want = expected_config(src_cfg, dtype)
    assert out_cfg == want
    assert list(out_cfg) == list(want), "config.json key order changed"
    for name in other_files(src):
        if name != "config.json":
            assert sha256(out / name) == sha256(src / name), f"{name} is not byte-identical"

    # Tensors: exactly torch's cast (non-NaN bit-exact), non-float tensors unchanged.
    src_t, out_t = read_tensors(src), read_tensors(out)
    assert set(out_t) == set(src_t)
    assert_order_preserved(src_t, out_t)
    for name, a in src_t.items():
        b = out_t[name]
        if a.dtype in FLOAT_ST_DTYPES:
            assert b.dtype == ST_DTYPES[dtype], f"{name}: {b.dtype}"
            assert_cast_exact(a.tensor, b.tensor, TORCH_DTYPES[dtype], name)
        else:
            assert (b.dtype, b.shape, b.raw()) == (a.dtype, a.shape, a.raw()), name

    # transformers picks the dtype up from the rewritten config, and computes exactly what
    # it computes when asked to load the original in that dtype.
    model = load_model(out)
    assert model.dtype == TORCH_DTYPES[dtype], f"transformers loaded {model.dtype}"
    logits, hidden = forward(model)
    ref_logits, ref_hidden = reference_outputs(fixture, dtype, "load")
    assert torch.equal(logits, ref_logits), "logits differ from from_pretrained(original, dtype=...)"
    assert torch.equal(hidden, ref_hidden)

    # ... and close to the original model cast with .to(dtype) (see TO_DTYPE_TOL).
    to_logits, _ = reference_outputs(fixture, dtype, "to")
    tol = TO_DTYPE_TOL[dtype] * max(1.0, to_logits.float().abs().max().item())
    diff = (logits.float() - to_logits.float()).abs().max().item()
    assert diff <= tol, f"max |logits - original.to({dtype}) logits| = {diff} > {tol}"


def _rewrite_config(folder, fn):
    path = folder / "config.json"
    cfg = json.loads(path.read_text())
    path.write_text(json.dumps(fn(cfg), indent=2) + "\n")


def test_legacy_torch_dtype_key_is_rewritten(tmp_path):
    """transformers 4.x configs spell the key `torch_dtype`; it is rewritten in place."""
    src = tmp_path / "src"
    shutil.copytree(FIXTURES / "llama-gqa-f32", src)
    _rewrite_config(src, lambda cfg: {("torch_dtype" if k == "dtype" else k): v for k, v in cfg.items()})
    out = tmp_path / "out"
    convert(src, out, "--dtype", "bf16")
    src_cfg = json.loads((src / "config.json").read_text())
    out_cfg = json.loads((out / "config.json").read_text())
    assert out_cfg["torch_dtype"] == "bfloat16"
    assert "dtype" not in out_cfg, "a `dtype` key was added next to `torch_dtype`"
    assert list(out_cfg) == list(src_cfg)
    assert load_model(out).dtype == torch.bfloat16


def test_dtype_key_not_added_when_absent(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(FIXTURES / "gpt2", src)
    _rewrite_config(src, lambda cfg: {k: v for k, v in cfg.items() if k not in DTYPE_KEYS})
    out = tmp_path / "out"
    convert(src, out, "--dtype", "f16")
    src_cfg = json.loads((src / "config.json").read_text())
    out_cfg = json.loads((out / "config.json").read_text())
    assert out_cfg == src_cfg, "config.json changed although it has no dtype key"
    assert all(t.dtype == "F16" for t in read_tensors(out).values())


def test_config_byte_identical_without_dtype_even_if_unusually_formatted(tmp_path):
    """Without --dtype config.json is copied, not re-serialised (odd spacing survives)."""
    src = tmp_path / "src"
    shutil.copytree(FIXTURES / "qwen3", src)
    cfg = json.loads((src / "config.json").read_text())
    (src / "config.json").write_text(json.dumps(cfg, indent=7, ensure_ascii=False) + "\n\n")
    out = tmp_path / "out"
    convert(src, out)
    assert (out / "config.json").read_bytes() == (src / "config.json").read_bytes()


# --------------------------------------------------------------------------- (f) determinism


@pytest.mark.parametrize(
    "fixture, opts",
    [
        ("llama-gqa-f32", []),
        ("mixtral", ["--dtype", "bf16"]),
        ("qwen2-moe", ["--dtype", "f16"]),
        ("llama-sharded", ["--dtype", "bf16"]),
        ("llama-gqa-f32", ["--max-shard-size", "100KB"]),
        ("gpt2", ["--dtype", "f32", "--max-shard-size", "60KB"]),
    ],
)
def test_convert_is_deterministic(fixture, opts, tmp_path):
    src = FIXTURES / fixture
    convert(src, tmp_path / "a", *opts)
    convert(src, tmp_path / "b", *opts)
    a, b = content_digest(tmp_path / "a"), content_digest(tmp_path / "b")
    assert a == b, "two runs with the same input and options wrote different files"


@pytest.mark.parametrize("fixture", ["llama-gqa-f32", "bert", "llama-gqa-bf16"])
def test_convert_of_own_output_is_a_fixed_point(fixture, tmp_path):
    """Re-converting pare's output with the same options reproduces it byte for byte."""
    convert(FIXTURES / fixture, tmp_path / "once", "--dtype", "bf16")
    convert(tmp_path / "once", tmp_path / "twice", "--dtype", "bf16")
    assert content_digest(tmp_path / "once") == content_digest(tmp_path / "twice")
