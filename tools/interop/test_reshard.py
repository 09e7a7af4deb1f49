"""Sharded output (`--max-shard-size`) and sharded input (index.json)."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from conftest import (
    FIXTURES,
    INDEX_NAME,
    SHARD_RE,
    content_digest,
    convert,
    expect_error,
    file_metadata,
    forward,
    load_model,
    other_files,
    read_header,
    read_tensors,
    reference_outputs,
    run_pare,
    sha256,
    weight_files,
)

LLAMA = FIXTURES / "llama-gqa-f32"
SHARDED = FIXTURES / "llama-sharded"


def tensor_bytes(header: dict) -> int:
    return sum(v["data_offsets"][1] - v["data_offsets"][0] for k, v in header.items() if k != "__metadata__")


def assert_packed_like_transformers(out, shards, limit, tensors):
    """README: shards are packed as transformers packs them. The reference is the real
    thing: huggingface_hub's split_torch_state_dict_into_shards (what save_pretrained
    calls) on the same tensors in input order. Every shard must hold exactly the tensors
    it assigns there, in the same order."""
    from huggingface_hub import split_torch_state_dict_into_shards

    split = split_torch_state_dict_into_shards(tensors, max_shard_size=limit)
    expected = {name: list(names) for name, names in split.filename_to_tensors.items()}
    if not split.is_sharded:
        expected = {"model.safetensors": list(tensors)}
    actual = {}
    for s in shards:
        header, _, _ = read_header(out / s)
        actual[s] = sorted((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    assert actual == expected


def check_sharded_output(src, out, limit: int) -> list[str]:
    """Everything a sharded output must satisfy. Returns the shard file names."""
    names = sorted(p.name for p in out.iterdir())
    shards = [n for n in names if n.endswith(".safetensors")]
    assert INDEX_NAME in names, f"no {INDEX_NAME} in {names}"
    assert "model.safetensors" not in names
    n = len(shards)
    assert shards == [f"model-{i:05d}-of-{n:05d}.safetensors" for i in range(1, n + 1)], shards
    assert all(SHARD_RE.match(s) for s in shards)

    src_t, out_t = read_tensors(src), read_tensors(out)
    assert set(out_t) == set(src_t)
    for name, a in src_t.items():
        b = out_t[name]
        assert (b.dtype, b.shape, b.raw()) == (a.dtype, a.shape, a.raw()), name

    index = json.loads((out / INDEX_NAME).read_text())
    weight_map = index["weight_map"]
    assert set(weight_map) == set(out_t), "weight_map does not cover exactly the tensors"
    for name, rec in out_t.items():
        assert weight_map[name] == rec.file, f"weight_map[{name}] = {weight_map[name]}, tensor is in {rec.file}"
    assert set(weight_map.values()) == set(shards), "a shard is missing from (or extra in) weight_map"
    total = sum(len(r.raw()) for r in out_t.values())
    assert index["metadata"]["total_size"] == total

    for s in shards:
        header, tnames, _ = read_header(out / s)
        assert tnames, f"{s} holds no tensor"
        assert file_metadata(out / s) == {"format": "pt"}
    assert_packed_like_transformers(out, shards, limit, {k: r.tensor for k, r in src_t.items()})

    for name in other_files(src):
        assert sha256(out / name) == sha256(src / name), f"{name} not byte-identical"
    assert sorted(n for n in names if not n.endswith(".safetensors") and n != INDEX_NAME) == other_files(src)
    return shards


def test_reshard_into_at_least_three_shards(tmp_path):
    out = tmp_path / "out"
    convert(LLAMA, out, "--max-shard-size", "100KB")
    shards = check_sharded_output(LLAMA, out, 100_000)
    assert len(shards) >= 3, shards

    logits, hidden = forward(load_model(out))
    ref_logits, ref_hidden = reference_outputs("llama-gqa-f32")
    assert torch.equal(logits, ref_logits)
    assert torch.equal(hidden, ref_hidden)


def test_reshard_with_cast(tmp_path):
    out = tmp_path / "out"
    convert(LLAMA, out, "--dtype", "bf16", "--max-shard-size", "40KB")
    shards = check_sharded_output_cast(out, 40_000)
    assert len(shards) >= 3
    logits, _ = forward(load_model(out))
    ref_logits, _ = reference_outputs("llama-gqa-f32", "bf16", "load")
    assert torch.equal(logits, ref_logits)


def check_sharded_output_cast(out, limit):
    src_t, out_t = read_tensors(LLAMA), read_tensors(out)
    assert set(out_t) == set(src_t)
    for name, a in src_t.items():
        assert out_t[name].dtype == "BF16"
        assert torch.equal(out_t[name].tensor, a.tensor.to(torch.bfloat16)), name
    index = json.loads((out / INDEX_NAME).read_text())
    assert index["metadata"]["total_size"] == sum(len(r.raw()) for r in out_t.values())
    assert {k: r.file for k, r in out_t.items()} == index["weight_map"]
    shards = [p.name for p in weight_files(out)]
    cast = {k: r.tensor.to(torch.bfloat16) for k, r in src_t.items()}
    assert_packed_like_transformers(out, shards, limit, cast)
    return shards


def test_sharded_input_to_single_file(tmp_path):
    out = tmp_path / "out"
    convert(SHARDED, out)
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(["model.safetensors", *other_files(SHARDED)]), names

    src_t, out_t = read_tensors(SHARDED), read_tensors(out)
    # Input order of a sharded checkpoint = shard 1's tensors in data order, then shard 2's, ...
    assert list(out_t) == list(src_t)
    for name, a in src_t.items():
        b = out_t[name]
        assert (b.dtype, b.shape, b.raw()) == (a.dtype, a.shape, a.raw()), name
    for name in other_files(SHARDED):
        assert sha256(out / name) == sha256(SHARDED / name)

    logits, _ = forward(load_model(out))
    assert torch.equal(logits, reference_outputs("llama-sharded")[0])
    assert torch.equal(logits, reference_outputs("llama-gqa-f32")[0])


def test_sharded_input_resharded_differently(tmp_path):
    out = tmp_path / "out"
    convert(SHARDED, out, "--max-shard-size", "60KB")
    shards = check_sharded_output(SHARDED, out, 60_000)
    assert len(shards) > 3


def test_sharded_input_is_read_through_the_index(tmp_path):
    """Shards are found through the index's weight_map, not by file-name pattern."""
    src = tmp_path / "src"
    src.mkdir()
    index = json.loads((SHARDED / INDEX_NAME).read_text())
    renames = {}
    for i, f in enumerate(weight_files(SHARDED), start=1):
        renames[f.name] = f"part-{i}.safetensors"
        shutil.copy2(f, src / renames[f.name])
    for name in other_files(SHARDED):
        shutil.copy2(SHARDED / name, src / name)
    index["weight_map"] = {k: renames[v] for k, v in index["weight_map"].items()}
    (src / INDEX_NAME).write_text(json.dumps(index, indent=2))

    out = tmp_path / "out"
    convert(src, out)
    assert [p.name for p in weight_files(out)] == ["model.safetensors"]
    src_t, out_t = read_tensors(SHARDED), read_tensors(out)
    assert list(out_t) == list(src_t)
    for name, a in src_t.items():
        assert out_t[name].raw() == a.raw(), name



def _copy_sharded(dst):
    shutil.copytree(SHARDED, dst)
    return json.loads((dst / INDEX_NAME).read_text())


def test_index_missing_a_tensor_of_a_shard_is_an_error(tmp_path):
    """README: an index that disagrees with its shards is an error (never drop weights)."""
    src = tmp_path / "src"
    index = _copy_sharded(src)
    del index["weight_map"]["model.norm.weight"]
    (src / INDEX_NAME).write_text(json.dumps(index, indent=2))
    for cmd in (["convert", src, tmp_path / "out"], ["inspect", src]):
        expect_error(run_pare(cmd), 1)
    assert not (tmp_path / "out").exists()


def test_index_naming_a_tensor_no_shard_has_is_an_error(tmp_path):
    src = tmp_path / "src"
    index = _copy_sharded(src)
    index["weight_map"]["model.layers.9.ghost.weight"] = "model-00001-of-00003.safetensors"
    (src / INDEX_NAME).write_text(json.dumps(index, indent=2))
    expect_error(run_pare(["convert", src, tmp_path / "out"]), 1, "model.layers.9.ghost.weight")
    assert not (tmp_path / "out").exists()


def test_safetensors_file_not_in_index_is_an_error(tmp_path):
    """README: safetensors files the index does not list are errors naming the file."""
    src = tmp_path / "src"
    _copy_sharded(src)
    shutil.copy2(LLAMA / "model.safetensors", src / "stray.safetensors")
    expect_error(run_pare(["convert", src, tmp_path / "out"]), 1, "stray.safetensors")
    assert not (tmp_path / "out").exists()


# Total tensor bytes of llama-gqa-f32 is 410,880; its file is ~413 KB with the header.
@pytest.mark.parametrize(
    "size, sharded",
    [
        ("5GB", False),
        ("2MiB", False),
        ("1MB", False),
        ("420KB", False),
        ("410KiB", False),  # 419,840 bytes: KiB are powers of 1024
        ("410KB", True),  # 410,000 bytes: KB are powers of 1000
        ("409600", True),  # plain bytes
        ("400KiB", True),
    ],
)
def test_max_shard_size_units(size, sharded, tmp_path):
    out = tmp_path / "out"
    convert(LLAMA, out, "--max-shard-size", size)
    has_index = (out / INDEX_NAME).exists()
    assert has_index == sharded, f"--max-shard-size {size}: sharded={has_index}, expected {sharded}"
    if not sharded:
        assert [p.name for p in weight_files(out)] == ["model.safetensors"]


def test_plain_bytes_equal_suffixed_size(tmp_path):
    convert(LLAMA, tmp_path / "a", "--max-shard-size", "100KB")
    convert(LLAMA, tmp_path / "b", "--max-shard-size", "100000")
    assert content_digest(tmp_path / "a") == content_digest(tmp_path / "b")
    convert(LLAMA, tmp_path / "c", "--max-shard-size", "100KiB")
    convert(LLAMA, tmp_path / "d", "--max-shard-size", "102400")
    assert content_digest(tmp_path / "c") == content_digest(tmp_path / "d")


@pytest.mark.parametrize("size", ["12XB", "-5MB", "", "MB", "1.5.2GB"])
def test_bad_max_shard_size_is_a_usage_error(size, tmp_path):
    out = tmp_path / "out"
    proc = run_pare(["convert", LLAMA, out, "--max-shard-size", size])
    expect_error(proc, 64)
    assert not out.exists()


def test_inspect_sharded_via_index_and_folder():
    a = run_pare(["inspect", SHARDED / INDEX_NAME, "--json", "--tensors"])
    b = run_pare(["inspect", SHARDED, "--json", "--tensors"])
    assert a.returncode == 0 and b.returncode == 0, (a.stderr, b.stderr)
    ja, jb = json.loads(a.stdout), json.loads(b.stdout)
    ja.pop("path"), jb.pop("path")
    assert ja == jb
    assert [s["file"] for s in ja["shards"]] == [p.name for p in weight_files(SHARDED)]
    assert len(ja["tensors"]) == len(read_tensors(SHARDED))
