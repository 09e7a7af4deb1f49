"""CLI behaviour of `pare convert`: refusals, --force, errors, no leftovers."""

from __future__ import annotations

import os
import shutil

import pytest
import torch

from conftest import (
    FIXTURES,
    content_digest,
    convert,
    describe,
    expect_error,
    read_tensors,
    run_pare,
    tree_digest,
)

LLAMA = FIXTURES / "llama-gqa-f32"


def listing(folder) -> list[str]:
    return sorted(os.listdir(folder))


def assert_no_leftovers(parent, expected):
    names = listing(parent)
    hidden = [n for n in names if n.startswith(".")]
    assert not hidden, f"temporary entries left beside OUT: {hidden}"
    assert names == sorted(expected), f"{parent} holds {names}, expected {sorted(expected)}"


def test_existing_out_without_force_is_refused(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("precious\n")
    (out / "model.safetensors").write_bytes(b"not a real file")
    before = tree_digest(out)
    proc = run_pare(["convert", LLAMA, out])
    expect_error(proc, 1)
    assert tree_digest(out) == before, "existing OUT was modified without --force"
    assert_no_leftovers(tmp_path, ["out"])


def test_existing_out_file_without_force_is_refused(tmp_path):
    out = tmp_path / "out"
    out.write_text("a file, not a folder\n")
    expect_error(run_pare(["convert", LLAMA, out]), 1)
    assert out.read_text() == "a file, not a folder\n"
    assert_no_leftovers(tmp_path, ["out"])


def test_force_replaces_existing_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "stale.txt").write_text("old\n")
    (out / "model-00001-of-00002.safetensors").write_bytes(b"old shard")
    convert(LLAMA, out, "--force")
    fresh = tmp_path / "fresh"
    convert(LLAMA, fresh)
    assert content_digest(out) == content_digest(fresh), "OUT after --force is not a clean conversion"
    assert_no_leftovers(tmp_path, ["out", "fresh"])


def test_force_on_missing_out_just_works(tmp_path):
    convert(LLAMA, tmp_path / "out", "--force")
    assert set(read_tensors(tmp_path / "out")) == set(read_tensors(LLAMA))


@pytest.mark.parametrize("where", ["child", "grandchild"])
def test_out_inside_in_is_refused(where, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(LLAMA, src)
    before = tree_digest(src)
    out = src / "converted" if where == "child" else src / "a" / "b"
    if where == "grandchild":
        (src / "a").mkdir()
        before = tree_digest(src)
    expect_error(run_pare(["convert", src, out]), 1)
    assert tree_digest(src) == before, "IN was modified"
    assert not out.exists()


def test_out_equal_to_in_is_refused_even_with_force(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(LLAMA, src)
    before = tree_digest(src)
    expect_error(run_pare(["convert", src, src, "--force"]), 1)
    assert tree_digest(src) == before, "IN was modified"


def test_missing_input_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    out = tmp_path / "out"
    err = expect_error(run_pare(["convert", missing, out]), 1)
    assert str(missing) in err or "no-such-model" in err, err
    assert not out.exists()
    err = expect_error(run_pare(["inspect", missing]), 1)
    assert "no-such-model" in err


def test_pytorch_bin_folder_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy2(LLAMA / "config.json", src / "config.json")
    torch.save({"w": torch.zeros(2, 2)}, src / "pytorch_model.bin")
    out = tmp_path / "out"
    err = expect_error(run_pare(["convert", src, out]), 1)
    assert "pytorch_model.bin" in err, err
    assert not out.exists()
    assert_no_leftovers(tmp_path, ["src"])
    err = expect_error(run_pare(["inspect", src]), 1)
    assert "pytorch_model.bin" in err


def test_folder_without_weights_is_refused(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy2(LLAMA / "config.json", src / "config.json")
    out = tmp_path / "out"
    expect_error(run_pare(["convert", src, out]), 1)
    assert not out.exists()
    assert_no_leftovers(tmp_path, ["src"])


@pytest.mark.parametrize(
    "args",
    [
        ["convert", LLAMA, "OUT", "--dtype", "int8"],
        ["convert", LLAMA, "OUT", "--no-such-flag"],
        ["convert", LLAMA],
        ["inspect"],
        ["inspect", LLAMA, "--jsn"],
        ["frobnicate", LLAMA],
    ],
    ids=["bad-dtype", "unknown-flag", "missing-out", "inspect-no-path", "inspect-bad-flag", "unknown-command"],
)
def test_usage_errors_exit_64(args, tmp_path):
    args = [tmp_path / "out" if a == "OUT" else a for a in args]
    proc = run_pare(args)
    expect_error(proc, 64)
    assert not (tmp_path / "out").exists()
    assert_no_leftovers(tmp_path, [])


def test_no_leftovers_after_success(tmp_path):
    convert(LLAMA, tmp_path / "out", "--dtype", "bf16", "--max-shard-size", "50KB")
    assert_no_leftovers(tmp_path, ["out"])
    hidden = [n for n in listing(tmp_path / "out") if n.startswith(".")]
    assert not hidden, hidden


def test_no_leftovers_after_failure_while_copying(tmp_path):
    """An extra file that cannot be read (a dangling symlink) makes the copy step fail after
    the tensors are written, or is reproduced as a link. Either way nothing half-written and no
    temporary folder may remain."""
    src = tmp_path / "src"
    shutil.copytree(LLAMA, src)
    os.symlink(tmp_path / "does-not-exist.json", src / "tokenizer.json")
    parent = tmp_path / "dst"
    parent.mkdir()
    out = parent / "out"
    proc = run_pare(["convert", src, out])
    if proc.returncode == 0:
        assert_no_leftovers(parent, ["out"])
    else:
        expect_error(proc, 1)
        assert_no_leftovers(parent, [])


def test_quiet_is_quiet(tmp_path):
    proc = run_pare(["convert", LLAMA, tmp_path / "out", "--quiet"])
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == "" and proc.stderr == "", describe(proc)


def test_help_exits_zero():
    for args in (["--help"], ["convert", "--help"], ["inspect", "--help"]):
        proc = run_pare(args)
        assert proc.returncode == 0, describe(proc)
        assert "--" in proc.stdout, describe(proc)
