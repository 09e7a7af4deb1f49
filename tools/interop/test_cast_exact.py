"""Casting exactness on every F16 and BF16 bit pattern and on F32 rounding edge cases.

Reference: torch's `.to(dtype)`. Non-NaN inputs must give bit-identical outputs; NaN
inputs must give NaN (any payload: torch's own NaN patterns are not consistent).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from conftest import (
    ST_DTYPES,
    TORCH_DTYPES,
    assert_cast_exact,
    bits,
    convert,
    expect_error,
    read_tensors,
    run_pare,
)


def _f32_from_bits(u32: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(u32, dtype=np.uint32).view(np.int32).copy()).view(torch.float32)


def _all16(dtype: torch.dtype) -> torch.Tensor:
    return torch.from_numpy(np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.int16).copy()).view(dtype)


def _with_neighbours(u32: np.ndarray) -> np.ndarray:
    """Each bit pattern, the next f32 below and above it (same sign), and the negatives."""
    u32 = u32.astype(np.uint64)
    vals = np.concatenate([u32, u32 - 1, u32 + 1]) & 0x7FFFFFFF
    vals = np.concatenate([vals, vals | 0x80000000])
    return vals.astype(np.uint32)


def f16_midpoints() -> torch.Tensor:
    """f32 values exactly halfway between adjacent f16 values (ties), +-1 f32 ulp, both signs.
    Includes 65520 (halfway from 65504 to the next power, which rounds to inf)."""
    pos = np.arange(0x0000, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float64)
    nxt = np.append(pos[1:], 65536.0)
    mid = ((pos + nxt) / 2).astype(np.float32)  # exact: needs 12 significant bits
    assert np.all(mid.astype(np.float64) == (pos + nxt) / 2)
    return _f32_from_bits(_with_neighbours(mid.view(np.uint32)))


def bf16_midpoints() -> torch.Tensor:
    """f32 values halfway between adjacent bf16 values (low 16 bits = 0x8000), +-1 ulp, both signs."""
    hi = np.arange(0x0000, 0x7F80, dtype=np.uint32)
    return _f32_from_bits(_with_neighbours((hi << 16) | 0x8000))


def f32_edges() -> torch.Tensor:
    f = np.float32
    values = [
        0.0, 1.0, 1.5, 2.0, 3.0, 0.1, 1 / 3, np.pi,
        65504.0,  # f16 max
        65519.996, 65520.0, 65520.004, 65535.0, 65536.0, 1e5, 1e30,  # f16 overflow threshold
        2.0 ** -24, 2.0 ** -25, 2.0 ** -25 * 1.0000001, 2.0 ** -26, 3 * 2.0 ** -26,  # f16 subnormals
        2.0 ** -14, 2.0 ** -14 - 2.0 ** -24, 2.0 ** -14 - 2.0 ** -25,  # f16 min normal / max subnormal
        1 + 2.0 ** -11, 1 + 3 * 2.0 ** -11, 1 + 2.0 ** -8, 1 + 3 * 2.0 ** -8,  # f16 / bf16 ties
        2.0 ** -126, 2.0 ** -133, 2.0 ** -149,  # f32 min normal, subnormals
        3.3895314e38, 3.4028235e38,  # around bf16 max / f32 max
    ]
    bits = [np.array([v], dtype=f).view(np.uint32)[0] for v in values]
    bits += [
        0x00000001, 0x007FFFFF, 0x00800000, 0x00008000, 0x00018000, 0x00007FFF,  # f32 subnormals
        0x7F7FFFFF, 0x7F7F7FFF, 0x7F7F8000, 0x7F7F8001, 0x7F7EFFFF,  # bf16 overflow to inf
        0x3F808000, 0x3F818000, 0x3F807FFF, 0x3F808001,  # bf16 ties to even, just below/above
        0x7F800000,  # +inf
        0x7FC00000, 0x7F800001, 0x7F800100, 0x7F807FFF, 0x7F808000, 0x7FBFFFFF, 0x7FFFFFFF,  # NaNs
        0x7FC00001, 0x7F801000, 0x7F802000, 0x7FFFE000,  # NaNs whose top mantissa bits are 0 / all 1
    ]
    arr = np.array(bits, dtype=np.uint32)
    arr = np.concatenate([arr, arr | 0x80000000])  # both signs (incl. -0, -inf, negative NaNs)
    return _f32_from_bits(arr)


def f32_random() -> torch.Tensor:
    rng = np.random.default_rng(0)
    return _f32_from_bits(rng.integers(0, 2**32, size=100_000, dtype=np.uint64).astype(np.uint32))


def cast_tensors() -> dict[str, torch.Tensor]:
    return {
        "f16.all_bit_patterns": _all16(torch.float16),
        "bf16.all_bit_patterns": _all16(torch.bfloat16),
        "f32.edges": f32_edges(),
        "f32.f16_midpoints": f16_midpoints(),
        "f32.bf16_midpoints": bf16_midpoints(),
        "f32.random_bits": f32_random(),
        "f16.matrix": _all16(torch.float16)[:4096].reshape(64, 64),
        "bf16.cube": _all16(torch.bfloat16)[30000:30060].reshape(3, 4, 5),
    }


@pytest.fixture(scope="module")
def cast_input(tmp_path_factory):
    """A model folder (no config.json) holding the bit-pattern tensors."""
    folder = tmp_path_factory.mktemp("casts") / "in"
    folder.mkdir()
    tensors = cast_tensors()
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    return folder, tensors


@pytest.mark.parametrize("dtype", ["f16", "bf16", "f32"])
def test_cast_all_bit_patterns(cast_input, dtype, tmp_path):
    folder, tensors = cast_input
    out = tmp_path / "out"
    convert(folder, out, "--dtype", dtype)
    got = read_tensors(out)
    assert list(got) == list(read_tensors(folder))
    for name, src in tensors.items():
        assert got[name].dtype == ST_DTYPES[dtype], name
        assert_cast_exact(src, got[name].tensor, TORCH_DTYPES[dtype], f"{name} -> {dtype}")


@pytest.mark.parametrize("dtype", ["f16", "bf16"])
def test_cast_bare_safetensors_file(cast_input, dtype, tmp_path):
    """IN may be a single .safetensors file; OUT is a model folder."""
    folder, tensors = cast_input
    out = tmp_path / "out"
    convert(folder / "model.safetensors", out, "--dtype", dtype)
    assert sorted(p.name for p in out.iterdir()) == ["model.safetensors"]
    got = read_tensors(out)
    for name in ("f32.edges", "bf16.all_bit_patterns"):
        assert_cast_exact(tensors[name], got[name].tensor, TORCH_DTYPES[dtype], name)


@pytest.mark.parametrize("dtype", ["f16", "bf16", "f32"])
def test_nan_keeps_its_sign(cast_input, dtype, tmp_path):
    """README: "NaN stays NaN with its sign" (payload bits are free). Stricter than the
    NaN-ness check above; torch itself does not keep the sign on every path."""
    folder, tensors = cast_input
    out = tmp_path / "out"
    convert(folder, out, "--dtype", dtype)
    got = read_tensors(out)
    for name, src in tensors.items():
        nan = torch.isnan(src.float()).reshape(-1)
        if not bool(nan.any()):
            continue
        # Sign from the raw bits: upcasting a NaN with torch may itself drop the sign.
        src_neg = (bits(src).reshape(-1) < 0)[nan]
        out_neg = (bits(got[name].tensor).reshape(-1) < 0)[nan]
        bad = int((src_neg != out_neg).sum())
        assert bad == 0, f"{name} -> {dtype}: {bad} NaNs changed sign"


def test_single_file_in_to_safetensors_out(cast_input, tmp_path):
    """README: a single .safetensors IN with an OUT ending in .safetensors writes one file."""
    folder, tensors = cast_input
    out = tmp_path / "cast.safetensors"
    convert(folder / "model.safetensors", out, "--dtype", "bf16")
    assert out.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cast.safetensors"]
    got = read_tensors(out)
    assert list(got) == list(read_tensors(folder))
    for name, src in tensors.items():
        assert_cast_exact(src, got[name].tensor, torch.bfloat16, name)


def test_non_float_tensors_and_odd_shapes(tmp_path):
    """Only F32/F16/BF16 are cast; other dtypes pass through; scalars and empty tensors work."""
    src = tmp_path / "in"
    src.mkdir()
    gen = torch.Generator().manual_seed(7)
    tensors = {
        "a.f64": torch.randn(5, 3, generator=gen, dtype=torch.float64),
        "b.i64": torch.arange(-6, 6, dtype=torch.int64).reshape(3, 4),
        "c.i32": torch.arange(10, dtype=torch.int32) * -77,
        "d.i16": torch.arange(8, dtype=torch.int16),
        "e.i8": torch.arange(-4, 4, dtype=torch.int8),
        "f.u8": torch.arange(250, 256, dtype=torch.uint8),
        "g.bool": torch.tensor([True, False, True]),
        "h.f32_scalar": torch.tensor(1.0000001, dtype=torch.float32),
        "i.f32_empty": torch.zeros(0, 4, dtype=torch.float32),
        "j.bf16_vec": torch.randn(7, generator=gen).to(torch.bfloat16),
        "k.f16_empty": torch.zeros(3, 0, dtype=torch.float16),
    }
    save_file(tensors, str(src / "model.safetensors"), metadata={"format": "pt"})
    src_t = read_tensors(src)
    for dtype in ("f16", "bf16", "f32"):
        out = tmp_path / f"out-{dtype}"
        convert(src, out, "--dtype", dtype)
        got = read_tensors(out)
        assert list(got) == list(src_t)
        for name, rec in src_t.items():
            if rec.dtype in ("F32", "F16", "BF16"):
                assert got[name].dtype == ST_DTYPES[dtype], name
                assert got[name].shape == rec.shape, name
                assert_cast_exact(rec.tensor, got[name].tensor, TORCH_DTYPES[dtype], name)
            else:
                assert (got[name].dtype, got[name].shape, got[name].raw()) == (rec.dtype, rec.shape, rec.raw()), name


def test_bad_dtype_is_usage_error(cast_input, tmp_path):
    folder, _ = cast_input
    for bad in ("int8", "F32x", "float64"):
        out = tmp_path / f"out-{bad}"
        expect_error(run_pare(["convert", folder, out, "--dtype", bad]), 64)
        assert not out.exists()


def test_inspect_bare_file_without_config(cast_input):
    folder, tensors = cast_input
    proc = run_pare(["inspect", folder / "model.safetensors", "--json"])
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout)
    for key in ("model_type", "architectures", "layers", "hidden_size", "attention_heads", "kv_heads",
                "head_dim", "intermediate_size", "experts", "experts_per_token", "vocab_size",
                "tie_word_embeddings"):
        assert key in info and info[key] is None, f"{key} = {info.get(key)!r}, expected null"
    assert info["format"] == "safetensors"
    assert info["parameters"] == sum(t.numel() for t in tensors.values())
    assert info["bytes"] == sum(t.numel() * t.element_size() for t in tensors.values())
    size = (folder / "model.safetensors").stat().st_size  # shards[].bytes = file size (README)
    assert info["shards"] == [{"file": "model.safetensors", "tensors": len(tensors), "bytes": size}]
