"""Hostile folders, concurrent runs and resource limits (issue 15): each test reproduces one
finding of the hostile-input review and checks that it is fixed.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from conftest import PARE_BIN, REPO_ROOT, describe, expect_error, run_pare

LLAMA = REPO_ROOT / "Tests" / "Fixtures" / "models" / "llama-gqa-f32"


def config(folder) -> dict:
    return json.loads((Path(folder) / "config.json").read_text())


# --------------------------------------------------------------------------- the lock


def test_two_concurrent_in_place_trims_both_land(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(LLAMA, model)
    runs = [subprocess.Popen([str(PARE_BIN), "trim", str(model), "--in-place", *flags, "--quiet"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for flags in (["--ffn", "80"], ["--heads", "2"])]
    for run in runs:
        _, err = run.communicate(timeout=120)
        assert run.returncode == 0, err
    # Neither update is lost: the second run planned from the first one's output.
    cfg = config(model)
    assert cfg["intermediate_size"] == 80 and cfg["num_attention_heads"] == 2
    assert run_pare(["validate", model]).returncode == 0


def hold_lock(path: Path):
    fd = os.open(path, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    return fd


def test_no_wait_fails_naming_the_holder(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(LLAMA, model)
    before = (model / "model.safetensors").read_bytes()
    fd = hold_lock(model)
    try:
        proc = run_pare(["trim", model, "--in-place", "--ffn", "80", "--no-wait"])
        expect_error(proc, 1, str(model), f"PID {os.getpid()}", "--no-wait")
        out = tmp_path / "out"
        shutil.copytree(LLAMA, out)
        fd_out = hold_lock(out)
        try:
            for args in (["convert", LLAMA, out], ["trim", LLAMA, out, "--ffn", "80"],
                         ["sparsify", LLAMA, out, "--pattern", "2:4"]):
                expect_error(run_pare([*args, "--force", "--no-wait"]), 1, str(out), f"PID {os.getpid()}")
        finally:
            os.close(fd_out)
    finally:
        os.close(fd)
    assert (model / "model.safetensors").read_bytes() == before


def test_a_second_run_waits_and_says_so(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(LLAMA, model)
    fd = hold_lock(model)
    release = threading.Timer(1.5, lambda: os.close(fd))
    release.start()
    started = time.monotonic()
    proc = run_pare(["trim", model, "--in-place", "--ffn", "80", "--quiet"])
    waited = time.monotonic() - started
    release.join()
    assert proc.returncode == 0, describe(proc)
    assert f"waiting for PID {os.getpid()}" in proc.stderr and waited >= 1.4
    assert config(model)["intermediate_size"] == 80


def test_readers_are_not_blocked(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(LLAMA, model)
    fd = hold_lock(model)
    try:
        for args in (["inspect", model], ["validate", model], ["trim", model, "--ffn", "80", "--dry-run"],
                     ["convert", model, tmp_path / "copy"]):
            proc = run_pare(args, timeout=30)
            assert proc.returncode == 0, describe(proc)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- modes and links


def modes(folder: Path) -> dict:
    return {p.name: p.stat().st_mode & 0o7777 for p in sorted(folder.iterdir())} | {".": folder.stat().st_mode & 0o7777}


@pytest.mark.parametrize("command", ["convert", "trim-in-place", "sparsify", "convert-pare"])
def test_outputs_keep_the_inputs_permission_bits(command, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(LLAMA, model)
    (model / "model.safetensors").chmod(0o600)
    (model / "config.json").chmod(0o640)
    (model / "README.md").chmod(0o604)
    model.chmod(0o750)
    out = tmp_path / "out"
    args = {
        "convert": ["convert", model, out],
        "convert-pare": ["convert", model, out, "--format", "pare"],
        "trim-in-place": ["trim", model, "--in-place", "--ffn", "80"],
        "sparsify": ["sparsify", model, out, "--pattern", "2:4"],
    }[command]
    proc = run_pare([*args, "--quiet"] if command != "sparsify" else args)
    assert proc.returncode == 0, describe(proc)
    got = modes(model if command == "trim-in-place" else out)
    assert got["."] == 0o750 and got["config.json"] == 0o640 and got["README.md"] == 0o604
    # New files (a .pare weight file, pare-trim.json, pare-sparsify.json) take the weight file's bits.
    for name, mode in got.items():
        if name.endswith((".safetensors", ".pare", ".json")) and name != "config.json" and name != "generation_config.json":
            assert mode == 0o600, f"{name}: {oct(mode)}"


def test_in_place_through_a_symlink_trims_the_target_and_keeps_the_link(tmp_path):
    real = tmp_path / "real"
    shutil.copytree(LLAMA, real)
    link = tmp_path / "link"
    link.symlink_to(real)
    proc = run_pare(["trim", link, "--in-place", "--ffn", "80", "--quiet"])
    assert proc.returncode == 0, describe(proc)
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert config(real)["intermediate_size"] == 80
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "real"], "staging left behind"


# --------------------------------------------------------------------------- index metadata


SHARDED = REPO_ROOT / "Tests" / "Fixtures" / "models" / "llama-sharded"


def with_total_size(tmp_path, value) -> Path:
    model = tmp_path / "model"
    shutil.copytree(SHARDED, model)
    index = model / "model.safetensors.index.json"
    data = json.loads(index.read_text())
    data["metadata"]["total_size"] = value
    index.write_text(json.dumps(data))
    return model


@pytest.mark.parametrize("value", [1, 410880 * 2])
def test_a_wrong_total_size_is_a_warning(value, tmp_path):
    model = with_total_size(tmp_path, value)
    proc = run_pare(["validate", model])
    assert proc.returncode == 0, describe(proc)
    assert f"pare: warning: {model}/model.safetensors.index.json: metadata.total_size says {value} bytes, but the tensors hold 410880" in proc.stderr
    report = json.loads(run_pare(["validate", model, "--json"]).stdout)
    assert len(report["warnings"]) == 1 and report["valid"] is True


@pytest.mark.parametrize("value", ["x", -1, 1.5, None, [1]])
def test_a_total_size_that_is_not_a_count_is_refused(value, tmp_path):
    model = with_total_size(tmp_path, value)
    for command in (["validate", model], ["inspect", model], ["convert", model, tmp_path / "out"]):
        expect_error(run_pare(command), 1, "metadata.total_size is", "not a byte count", "[rule: index-structure]")
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- many tensors


def test_validate_prints_the_first_twenty_problems_then_a_count(tmp_path):
    import numpy as np
    from safetensors.numpy import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(LLAMA, model)
    tensors = load_file(str(model / "model.safetensors"))
    tensors.update({f"stray.{i}": np.zeros(2, dtype=np.float32) for i in range(500)})
    save_file(tensors, str(model / "model.safetensors"))
    proc = run_pare(["validate", model])
    assert proc.returncode == 1
    lines = proc.stderr.strip().split("\n")
    assert len(lines) == 22, proc.stderr[:2000]
    assert all(line.startswith("pare: error: ") for line in lines)
    assert "and 480 more (--json lists every one)" in lines[20] and "500 problems" in lines[21]
    report = json.loads(run_pare(["validate", model, "--json"]).stdout)
    assert len(report["problems"]) == 500


# --------------------------------------------------------------------------- confinement

TRAINED = REPO_ROOT / "Tests" / "Fixtures" / "models" / "trained-llama"


def hostile_folder(tmp_path, how: str) -> tuple[Path, Path]:
    """A model folder with one link out to a 'secret': a file link, a folder link, or a link
    inside a subfolder."""
    secret_dir = tmp_path / "home" / ".ssh"
    secret_dir.mkdir(parents=True)
    secret = secret_dir / "id_ed25519"
    secret.write_text("-----BEGIN OPENSSH PRIVATE KEY----- not really\n")
    model = tmp_path / "model"
    shutil.copytree(LLAMA, model)
    if how == "file":
        link = model / "tokenizer.json"
        link.symlink_to(secret)
    elif how == "folder":
        link = model / "extras"
        link.symlink_to(secret_dir)
    else:
        (model / "sub").mkdir()
        link = model / "sub" / "notes.txt"
        link.symlink_to(os.path.relpath(secret, model / "sub"))
    return model, link


@pytest.mark.parametrize("how", ["file", "folder", "nested"])
def test_symlinks_out_of_the_folder_are_refused(how, tmp_path):
    model, link = hostile_folder(tmp_path, how)
    out = tmp_path / "out"
    for args in (["convert", model, out], ["trim", model, out, "--ffn", "80"], ["sparsify", model, out, "--pattern", "2:4"],
                 ["inspect", model], ["validate", model], ["trim", model, "--in-place", "--ffn", "80"]):
        proc = run_pare(args)
        err = expect_error(proc, 1, str(link), "outside the model folder", "[rule: symlink-outside]")
        assert "--follow-symlinks" in err
        assert not out.exists()
    assert link.is_symlink()
    # Trusted on purpose: the secret is copied like any other file.
    proc = run_pare(["convert", model, out, "--follow-symlinks", "--quiet"])
    assert proc.returncode == 0, describe(proc)
    assert "PRIVATE KEY" in "".join(p.read_text(errors="replace") for p in out.rglob("*") if p.is_file() and p.suffix != ".safetensors")


def test_links_inside_the_folder_keep_working(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(LLAMA, model)
    (model / "docs").mkdir()
    (model / "docs" / "card.md").write_text("a model card\n")
    (model / "README-link.md").symlink_to("docs/card.md")
    (model / "docs-link").symlink_to("docs")
    proc = run_pare(["convert", model, tmp_path / "out", "--quiet"])
    assert proc.returncode == 0, describe(proc)
    assert (tmp_path / "out" / "README-link.md").read_text() == "a model card\n"
    assert (tmp_path / "out" / "docs-link" / "card.md").read_text() == "a model card\n"


def test_tokenizer_json_linked_out_is_refused_for_text(tmp_path):
    model = tmp_path / "model"
    shutil.copytree(TRAINED, model)
    outside = tmp_path / "tokenizer-outside.json"
    (model / "tokenizer.json").rename(outside)
    (model / "tokenizer.json").symlink_to(outside)
    text = tmp_path / "t.txt"
    text.write_text("Hello world, the tokenizer is outside.")
    for args in (["tokenize", model, "--text", text, "-o", tmp_path / "ids.safetensors"],
                 ["eval", model, "--text", text]):
        expect_error(run_pare(args), 1, "tokenizer.json is a symlink to", "[rule: symlink-outside]")
    proc = run_pare(["tokenize", model, "--text", text, "-o", tmp_path / "ids.safetensors", "--follow-symlinks"])
    assert proc.returncode == 0, describe(proc)


# --------------------------------------------------------------------------- stale staging


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def own_start() -> int:
    stat = Path(f"/proc/{os.getpid()}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[19])


@pytest.mark.parametrize("name_format", ["pid-start", "pid only (older pare)"])
def test_the_next_run_removes_a_dead_runs_staging_and_says_so(name_format, tmp_path):
    pid = dead_pid()
    suffix = f"{pid}-12345" if name_format == "pid-start" else f"{pid}"
    stale = tmp_path / f".out.pare-tmp-{suffix}"
    shutil.copytree(LLAMA, stale)
    live = tmp_path / f".out.pare-tmp-{os.getpid()}-{own_start()}"
    live.mkdir()
    other = tmp_path / f".elsewhere.pare-tmp-{pid}-1"
    other.mkdir()
    proc = run_pare(["convert", LLAMA, tmp_path / "out", "--quiet"])
    assert proc.returncode == 0, describe(proc)
    assert not stale.exists(), "the dead run's staging folder is still there"
    assert f"pare: warning: removed {stale}, left by an earlier run (PID {pid}) that is no longer running" in proc.stderr
    assert live.exists(), "a live run's staging folder was removed"
    assert other.exists(), "a staging folder for another output was removed"


def test_pare_clean_removes_every_dead_runs_entry(tmp_path):
    pid = dead_pid()
    dead = [tmp_path / f".a.pare-tmp-{pid}-7", tmp_path / f".b.pare-tmp-{pid}", tmp_path / f".c.pare-tmp-{pid}-7-old"]
    for d in dead:
        shutil.copytree(LLAMA, d)
    single = tmp_path / f".x.safetensors.pare-tmp-{pid}-9"
    single.write_bytes(b"half a file")
    live = tmp_path / f".d.pare-tmp-{os.getpid()}-{own_start()}"
    live.mkdir()
    keep = tmp_path / "model"
    shutil.copytree(LLAMA, keep)

    report = json.loads(run_pare(["clean", tmp_path, "--dry-run", "--json"]).stdout)
    assert sorted(r["path"] for r in report["removed"]) == sorted(map(str, [*dead, single]))
    assert all(d.exists() for d in dead)
    proc = run_pare(["clean", tmp_path])
    assert proc.returncode == 0, describe(proc)
    assert not any(d.exists() for d in [*dead, single])
    assert live.exists() and keep.exists() and f"kept {live}" in proc.stdout
    assert run_pare(["validate", keep]).returncode == 0
    assert "nothing to clean" in run_pare(["clean", keep]).stdout


# --------------------------------------------------------------------------- memory limits

LIMITS_MB = [300, 400, 500, 600, 700, 800, 900, 1000]


@pytest.fixture(scope="module")
def midsize(tmp_path_factory) -> Path:
    """A 4-layer Llama of ~85M parameters in bf16 (~170 MB): large enough that the limits
    bite in the middle of the work, small enough to run 32 times in CI."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=8192, hidden_size=1024, intermediate_size=2816, num_hidden_layers=4,
                      num_attention_heads=16, num_key_value_heads=4, max_position_embeddings=256, tie_word_embeddings=False)
    folder = tmp_path_factory.mktemp("midsize") / "model"
    LlamaForCausalLM(cfg).to(torch.bfloat16).save_pretrained(folder, safe_serialization=True)
    return folder


def limited(limit_mb: int):
    import resource

    def apply():
        resource.setrlimit(resource.RLIMIT_AS, (limit_mb << 20, limit_mb << 20))
    return apply


@pytest.mark.parametrize("limit_mb", LIMITS_MB)
def test_memory_limits_end_in_success_or_one_line(limit_mb, midsize, tmp_path):
    before = {p.name: p.stat().st_mtime_ns for p in midsize.iterdir()}
    commands = {
        "convert": ["convert", midsize, tmp_path / "c"],
        "convert-pare": ["convert", midsize, tmp_path / "p", "--format", "pare"],
        "trim": ["trim", midsize, tmp_path / "t", "--ffn", "0.5", "--heads", "8"],
        "sparsify": ["sparsify", midsize, tmp_path / "s", "--pattern", "2:4"],
    }
    outcomes = {}
    for name, args in commands.items():
        started = time.monotonic()
        try:
            proc = subprocess.run([str(PARE_BIN), *map(str, args)], capture_output=True, text=True, timeout=60,
                                  preexec_fn=limited(limit_mb))
        except subprocess.TimeoutExpired:
            pytest.fail(f"{name} under {limit_mb} MB did not end within 60 s")
        elapsed = time.monotonic() - started
        lines = [line for line in proc.stderr.split("\n") if line.strip()]
        if proc.returncode == 0:
            assert Path(args[2]).exists(), f"{name} under {limit_mb} MB exited 0 without an output"
        else:
            assert proc.returncode == 1 and len(lines) == 1 and lines[0].startswith("pare: error: "), \
                f"{name} under {limit_mb} MB: exit {proc.returncode} after {elapsed:.1f} s\n{proc.stderr[:2500]}"
            assert not Path(args[2]).exists()
        leftovers = [p.name for p in tmp_path.iterdir() if ".pare-tmp-" in p.name]
        assert not leftovers, f"{name} under {limit_mb} MB left {leftovers}"
        outcomes[name] = proc.returncode
    assert {p.name: p.stat().st_mtime_ns for p in midsize.iterdir()} == before
    print(limit_mb, outcomes)


def test_sigterm_ends_a_run_in_bounded_time(tmp_path):
    """A run asked to stop stops at its next step; the grace alarm ends one that cannot
    (checked here on a run that stops normally: exit 143, nothing left)."""
    from test_cli import _sparse_model

    model = tmp_path / "sparse"
    _sparse_model(model)
    run = subprocess.Popen([str(PARE_BIN), "convert", str(model), str(tmp_path / "out"), "--dtype", "bf16"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(0.5)
    started = time.monotonic()
    run.terminate()
    _, err = run.communicate(timeout=30)
    assert run.returncode == 143, err
    assert time.monotonic() - started < 11
    assert not any(".pare-tmp-" in p.name for p in tmp_path.iterdir())


# --------------------------------------------------------------------------- crashes and scale


def test_crash_harness_short_form(midsize):
    """tools/crash_harness.py in its short form (the README reports the full 20 kills)."""
    import sys

    proc = subprocess.run([sys.executable, str(REPO_ROOT / "tools" / "crash_harness.py"), "--kills", "6",
                           "--pare", str(PARE_BIN), "--model", str(midsize), "--json"],
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    results = json.loads(proc.stdout)
    assert [r["command"] for r in results] == ["trim", "convert", "sparsify"]
    for r in results:
        assert r["kills_passed"] == r["kills"] == 6 and not r["failures"], r
        if shutil.which("strace"):
            assert r["injections_passed"] == r["injections"] == 1, r


def test_cost_is_linear_in_tensors(tmp_path):
    """40k tensors in one file convert in at most 20 times the time of 4k (linear: 10×;
    the quadratic path made it 100×). Best of three, so a slow moment does not decide."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    times = {}
    for n in (4000, 40000):
        model = tmp_path / f"m{n}"
        model.mkdir()
        shutil.copy(LLAMA / "config.json", model / "config.json")
        tensors = load_file(str(LLAMA / "model.safetensors"))
        tensors.update({f"stray.{i}": np.full(4, i, dtype=np.float32) for i in range(n)})
        save_file(tensors, str(model / "model.safetensors"))
        best = float("inf")
        for attempt in range(3):
            out = tmp_path / f"out{n}-{attempt}"
            started = time.perf_counter()
            proc = run_pare(["convert", model, out, "--quiet"])
            best = min(best, time.perf_counter() - started)
            assert proc.returncode == 0, describe(proc)
        times[n] = best
    assert times[40000] <= 20 * times[4000], times
