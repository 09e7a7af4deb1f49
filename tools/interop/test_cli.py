"""CLI behaviour of `pare convert`: refusals, --force, errors, no leftovers."""

from __future__ import annotations

import json
import os
import shutil
import signal
import struct
import subprocess
import time

import pytest
import torch

from conftest import (
    FIXTURES,
    PARE_BIN,
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


def test_out_inside_in_through_a_symlink_is_refused(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(LLAMA, src)
    os.symlink(src, tmp_path / "alias")
    before = tree_digest(src)
    expect_error(run_pare(["convert", src, tmp_path / "alias" / "out"]), 1)
    assert tree_digest(src) == before, "IN was modified"
    expect_error(run_pare(["convert", tmp_path / "alias", src / "out2"]), 1)
    assert tree_digest(src) == before, "IN was modified"


def test_out_equal_to_in_is_refused_even_with_force(tmp_path):
    src = tmp_path / "src"
    shutil.copytree(LLAMA, src)
    before = tree_digest(src)
    expect_error(run_pare(["convert", src, src, "--force"]), 1)
    assert tree_digest(src) == before, "IN was modified"


def test_in_inside_out_is_refused_even_with_force(tmp_path):
    """With --force, replacing OUT would delete IN if IN lives inside OUT."""
    parent = tmp_path / "parent"
    src = parent / "model"
    shutil.copytree(LLAMA, src)
    before = tree_digest(parent)
    expect_error(run_pare(["convert", src, parent, "--force"]), 1)
    assert tree_digest(parent) == before, "IN (inside OUT) was modified"
    assert_no_leftovers(tmp_path, ["parent"])


def test_other_files_and_subfolders_copied(tmp_path):
    """Tokenizer files, chat templates, subfolders: copied unchanged (README)."""
    src = tmp_path / "src"
    shutil.copytree(LLAMA, src)
    (src / "tokenizer.json").write_text('{"version": "1.0", "model": {"type": "BPE"}}\n')
    (src / "chat_template.jinja").write_text("{{ messages }}\n")
    (src / "extra").mkdir()
    (src / "extra" / "notes.dat").write_bytes(bytes(range(256)) * 3)
    (src / "extra" / "deeper").mkdir()
    (src / "extra" / "deeper" / "x.txt").write_text("deep\n")
    out = tmp_path / "out"
    convert(src, out, "--dtype", "f16")
    want = {k: v for k, v in content_digest(src).items() if not k.endswith(".safetensors") and k != "config.json"}
    got = {k: v for k, v in content_digest(out).items() if not k.endswith(".safetensors") and k != "config.json"}
    assert got == want


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


def test_dangling_symlink_is_not_dropped_silently(tmp_path):
    """An extra file that cannot be read (a dangling symlink) must not vanish silently: either
    the run fails with an error naming it (and leaves nothing behind), or OUT reproduces the
    link. Our reading of "copies every other file"; silently omitting it loses a file."""
    src = tmp_path / "src"
    shutil.copytree(LLAMA, src)
    os.symlink(tmp_path / "does-not-exist.json", src / "tokenizer.json")
    parent = tmp_path / "dst"
    parent.mkdir()
    out = parent / "out"
    proc = run_pare(["convert", src, out])
    if proc.returncode == 0:
        assert_no_leftovers(parent, ["out"])
        assert (out / "tokenizer.json").is_symlink(), (
            "tokenizer.json (a dangling symlink in IN) was silently left out of OUT\n" + describe(proc)
        )
    else:
        expect_error(proc, 1, "tokenizer.json")
        assert_no_leftovers(parent, [])


def test_directory_symlink_cycle_is_not_followed(tmp_path):
    """`loop -> .` inside IN: an error naming it, or the link reproduced -- never the folder
    copied into itself level after level."""
    src = tmp_path / "src"
    shutil.copytree(LLAMA, src)
    os.symlink(".", src / "loop")
    parent = tmp_path / "dst"
    parent.mkdir()
    out = parent / "out"
    proc = run_pare(["convert", src, out], timeout=60)
    if proc.returncode == 0:
        files = list(out.rglob("*"))
        assert not (out / "loop").is_dir() or (out / "loop").is_symlink(), (
            f"the symlink cycle was followed: OUT holds {len(files)} entries, e.g. "
            f"{max((str(p.relative_to(out)) for p in files), key=len)}"
        )
        assert_no_leftovers(parent, ["out"])
    else:
        expect_error(proc, 1, "loop")
        assert_no_leftovers(parent, [])


def test_hf_cache_layout_with_symlinked_files(tmp_path):
    """HF hub cache snapshots (models--org--name/snapshots/<rev>/) are folders of symlinks
    into the repository's blobs/: followed, copied as files. The repository's cache folder
    counts as inside the model folder; links elsewhere need --follow-symlinks."""
    repo = tmp_path / "hub" / "models--org--tiny"
    blobs, snap = repo / "blobs", repo / "snapshots" / "0123abcd"
    blobs.mkdir(parents=True)
    snap.mkdir(parents=True)
    for f in sorted(LLAMA.iterdir()):
        shutil.copy2(f, blobs / f.name)
        os.symlink(os.path.relpath(blobs / f.name, snap), snap / f.name)
    out = tmp_path / "out"
    convert(snap, out)
    assert content_digest(out) == content_digest(_fresh(LLAMA, tmp_path / "ref"))
    assert not any(p.is_symlink() for p in out.iterdir())

    # The same links from a folder that is not a snapshot leave it: refused, then allowed.
    flat = tmp_path / "flat"
    flat.mkdir()
    for f in sorted(LLAMA.iterdir()):
        os.symlink(os.path.relpath(blobs / f.name, flat), flat / f.name)
    proc = run_pare(["convert", flat, tmp_path / "out2"])
    expect_error(proc, 1, "is a symlink to", "outside the model folder", "--follow-symlinks", "[rule: symlink-outside]")
    assert not (tmp_path / "out2").exists()
    convert(flat, tmp_path / "out2", "--follow-symlinks")
    assert content_digest(tmp_path / "out2") == content_digest(out)


def _fresh(src, out):
    convert(src, out)
    return out


def _sparse_model(folder, tensors=8, rows=4096, cols=8192):
    """A model folder whose model.safetensors is a sparse file of F32 zeros (1 GiB by
    default): instant to create, slow enough to convert that a signal lands mid-write."""
    folder.mkdir()
    header, off = {"__metadata__": {"format": "pt"}}, 0
    for i in range(tensors):
        n = rows * cols * 4
        header[f"w{i}"] = {"dtype": "F32", "shape": [rows, cols], "data_offsets": [off, off + n]}
        off += n
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    path = folder / "model.safetensors"
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        f.truncate(8 + len(raw) + off)
    (folder / "config.json").write_text("{}\n")
    return folder


def _interrupt_mid_write(args, parent, sig):
    """Start pare, wait until its hidden staging entry appears in `parent`, send `sig`."""
    before = set(os.listdir(parent))
    proc = subprocess.Popen([str(PARE_BIN), *map(str, args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    staged = False
    while time.monotonic() < deadline and proc.poll() is None:
        if any(n.startswith(".") for n in set(os.listdir(parent)) - before):
            staged = True
            break
        time.sleep(0.002)
    if staged:
        time.sleep(0.05)  # let it write some bytes
        proc.send_signal(sig)
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise
    assert staged, f"pare finished (exit {proc.returncode}) before a staging folder was seen: {err}"
    return proc.returncode, err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_interrupted_convert_leaves_nothing(sig, tmp_path):
    """README: exit 128 + signal (130 Ctrl-C, 143 SIGTERM), the staging folder is removed."""
    src = _sparse_model(tmp_path / "src")
    parent = tmp_path / "dst"
    parent.mkdir()
    code, err = _interrupt_mid_write(["convert", src, parent / "out", "--dtype", "bf16"], parent, sig)
    assert code == 128 + sig, f"exit {code}: {err}"
    assert_no_leftovers(parent, [])


def test_interrupted_force_keeps_existing_out(tmp_path):
    """With --force the old OUT is swapped out only once the new one is complete."""
    src = _sparse_model(tmp_path / "src")
    parent = tmp_path / "dst"
    parent.mkdir()
    out = parent / "out"
    convert(LLAMA, out)
    before = tree_digest(out)
    code, err = _interrupt_mid_write(["convert", src, out, "--dtype", "bf16", "--force"], parent, signal.SIGTERM)
    assert code == 143, f"exit {code}: {err}"
    assert tree_digest(out) == before, "existing OUT changed although the --force run was interrupted"
    assert_no_leftovers(parent, ["out"])


def test_quiet_is_quiet(tmp_path):
    proc = run_pare(["convert", LLAMA, tmp_path / "out", "--quiet"])
    assert proc.returncode == 0, describe(proc)
    assert proc.stdout == "" and proc.stderr == "", describe(proc)


def test_help_exits_zero():
    for args in (["--help"], ["convert", "--help"], ["inspect", "--help"]):
        proc = run_pare(args)
        assert proc.returncode == 0, describe(proc)
        assert "--" in proc.stdout, describe(proc)
