"""What a new user meets first: bad option values, footguns, refusals in the user's terms,
help that can be copied. Each case is the exact command, its exit code and the words of
its message (exit 64 is a usage error, named with its rule, whatever else is given)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from conftest import FIXTURES, expect_error, run_pare

LLAMA = FIXTURES / "llama-gqa-f32"


@pytest.mark.parametrize("flags,words", [
    (["--ffn", "1.5"], ["'1.5' is invalid for '--ffn", "a fraction in (0, 1]"]),
    (["--ffn", "0"], ["'0' is invalid for '--ffn", "a count of at least 1"]),
    (["--ffn", "-1"], ["'-1' is invalid for '--ffn"]),
    (["--drop-layers", "5-3"], ["'5-3' is invalid for '--drop-layers", "rising ranges"]),
    (["--drop-layers", "one"], ["'one' is invalid for '--drop-layers"]),
    (["--drop-layers", "-1"], ["'-1' is invalid for '--drop-layers"]),
    (["--kv-heads", "0"], ["'0' is invalid for '--kv-heads", "at least 1"]),
    (["--merge-layers", "3"], ["'3' is invalid for '--merge-layers", "two or more consecutive layers"]),
    # The same bad value is named the same way next to a valid option.
    (["--drop-layers", "1", "--ffn", "1.5"], ["'1.5' is invalid for '--ffn"]),
    (["--ffn", "0.5", "--level", "3"], ["--level", "needs --format pare"]),
])
def test_bad_values_are_refused_at_the_parser_with_their_rule(tmp_path, flags, words):
    proc = run_pare(["trim", LLAMA, tmp_path / "out", *flags])
    assert proc.returncode == 64, proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert "nothing to trim" not in proc.stderr
    assert not (tmp_path / "out").exists()


def test_convert_level_needs_pare_format(tmp_path):
    proc = run_pare(["convert", LLAMA, tmp_path / "out", "--level", "3"])
    assert proc.returncode == 64 and "needs --format pare" in proc.stderr


def test_a_trim_that_removes_nothing_is_refused(tmp_path):
    proc = run_pare(["trim", LLAMA, tmp_path / "out", "--ffn", "1.0"])
    expect_error(proc, 1, "removes nothing", "keeps all 96 FFN channels", "is a fraction", "[rule: nothing-removed]")
    assert not (tmp_path / "out").exists()


def test_a_step_that_keeps_everything_is_a_warning():
    proc = run_pare(["trim", LLAMA, "--ffn", "1.0", "--drop-layers", "1", "--dry-run"])
    assert proc.returncode == 0, proc.stderr
    assert "pare: warning: --ffn 1.0 keeps all 96 FFN channels" in proc.stderr
    # A count of 1 is a count: it keeps one channel, without a warning (1 of 96 is over 1 %).
    proc = run_pare(["trim", LLAMA, "--ffn", "1", "--dry-run"])
    assert proc.returncode == 0 and "keep 1 of 96 FFN channels" in proc.stdout and "warning" not in proc.stderr


@pytest.mark.parametrize("fixture,flags,words", [
    ("bert", ["--heads", "2"], ["derives head_dim = hidden / heads", "fewer heads would change the size of every head"]),
    ("gpt2", ["--hidden", "32"], ["head_dim = hidden / heads"]),
])
def test_refusals_say_the_real_reason(tmp_path, fixture, flags, words):
    expect_error(run_pare(["trim", FIXTURES / fixture, tmp_path / "out", *flags]), 1, *words)


@pytest.mark.parametrize("model_type,words", [
    ("roberta-xl", ["no architecture descriptor for model_type 'roberta-xl'", "--formats DIR", "formats/README.md"]),
    (None, ["config.json has no model_type"]),
])
def test_an_unknown_architecture_points_at_the_way_to_describe_it(tmp_path, model_type, words):
    model = tmp_path / "model"
    shutil.copytree(FIXTURES / "bert", model)
    config = json.loads((model / "config.json").read_text())
    if model_type is None:
        del config["model_type"]
    else:
        config["model_type"] = model_type
    (model / "config.json").write_text(json.dumps(config))
    text = expect_error(run_pare(["validate", model]), 1, *words)
    assert "(none)" not in text


def test_validate_help_lists_every_family():
    out = run_pare(["validate", "--help"]).stdout
    for family in ["llama", "mistral", "qwen2", "qwen3", "qwen3_moe", "mixtral", "qwen2_moe", "olmo2", "gemma2", "gpt2", "bert"]:
        assert re.search(rf"\b{family}\b", out), family


def test_sparsify_dry_run_needs_no_output():
    proc = run_pare(["sparsify", LLAMA, "--pattern", "2:4", "--dry-run"])
    assert proc.returncode == 0, proc.stderr
    proc = run_pare(["sparsify", LLAMA, "--pattern", "2:4"])
    assert proc.returncode == 64 and "missing OUT" in proc.stderr


def test_counts_read_as_english(tmp_path):
    """'1 tensor', '1 layer': a model with one layer and a file with one tensor."""
    import torch
    from safetensors.torch import save_file

    proc = run_pare(["trim", LLAMA, tmp_path / "one", "--drop-layers", "1", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    out = run_pare(["validate", tmp_path / "one"]).stdout
    assert "1 layer\n" in out and "1 layers" not in out
    single = tmp_path / "single.safetensors"
    save_file({"w": torch.zeros(2)}, str(single))
    proc = run_pare(["convert", single, tmp_path / "copy.safetensors"])
    assert proc.returncode == 0, proc.stderr
    assert "1 tensor," in proc.stderr and "1 file" in proc.stderr


@pytest.mark.parametrize("command", ["convert", "trim", "sparsify", "validate", "inspect"])
def test_help_examples_fit_on_one_line(command):
    """Each example in --help is one whole command: copy-paste must not break it."""
    lines = run_pare([command, "--help"]).stdout.splitlines()
    examples = [i for i, line in enumerate(lines) if line.strip().startswith("pare ")]
    assert examples, "no examples"
    for i in examples:
        following = lines[i + 1] if i + 1 < len(lines) else ""
        assert following.strip() == "" or following.strip().startswith("pare ") or not following.startswith(" " * 6), (
            f"example wraps:\n{lines[i]}\n{following}")
        assert len(lines[i]) <= 80, lines[i]


def test_a_fraction_spread_over_other_ffns_does_not_warn():
    """qwen2-moe's only dense layer is 1: with it dropped, --ffn 0.5 prunes the experts'
    and the shared expert's FFNs, and keeps no dense FFN to warn about."""
    proc = run_pare(["trim", FIXTURES / "qwen2-moe", "--drop-layers", "1", "--ffn", "0.5", "--dry-run"])
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr, proc.stderr
    assert "keep 12 of 24 FFN channels in every expert" in proc.stdout


def test_sparsify_alone_is_a_trim_step(tmp_path):
    proc = run_pare(["trim", LLAMA, "--sparsify", "2:4", "--dry-run"])
    assert proc.returncode == 0, proc.stderr
    assert "then 2:4 sparsity by magnitude" in proc.stdout


def test_a_flag_overrides_the_recipes_keep_lists(tmp_path):
    first = tmp_path / "first"
    assert run_pare(["trim", LLAMA, first, "--ffn", "48", "--quiet"]).returncode == 0
    proc = run_pare(["trim", LLAMA, "--recipe", first / "pare-trim.json", "--ffn", "24", "--dry-run", "--json"])
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["axes"]["ffn"]["after"] == 24


def test_keep_unknown_with_hidden_is_refused(tmp_path):
    import torch
    from safetensors.torch import load_file, save_file

    model = tmp_path / "model"
    shutil.copytree(LLAMA, model)
    tensors = load_file(str(model / "model.safetensors"))
    tensors["model.extra_norm.weight"] = torch.ones(64)
    save_file(tensors, str(model / "model.safetensors"), metadata={"format": "pt"})
    expect_error(run_pare(["trim", model, tmp_path / "out", "--hidden", "48", "--keep-unknown"]), 1,
                 "--keep-unknown with --hidden", "model.extra_norm.weight")


def test_a_folder_that_is_not_a_model_says_so(tmp_path):
    """A repository with a virtualenv: not read below its top level, and named for what it is."""
    repo = tmp_path / "repo"
    (repo / ".venv" / "lib").mkdir(parents=True)
    (repo / ".venv" / "lib" / "weights.pth").write_bytes(b"\0" * 16)
    (repo / "README.md").write_text("not a model\n")
    text = expect_error(run_pare(["inspect", repo]), 1, "not a model folder", "config.json")
    assert ".pth" not in text


def sentence_transformers_folder(tmp_path, fixture):
    """A sentence-transformers layout: the model, a pooling module, a Dense head in .bin."""
    import torch

    folder = tmp_path / "st"
    shutil.copytree(FIXTURES / fixture, folder)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ]))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text('{"pooling_mode_mean_tokens": true}')
    (folder / "2_Dense").mkdir()
    (folder / "2_Dense" / "config.json").write_text('{"in_features": 32, "out_features": 16}')
    torch.save({"linear.weight": torch.zeros(16, 32)}, folder / "2_Dense" / "pytorch_model.bin")
    return folder


def test_extra_modules_are_listed_and_copied_unless_the_trim_changes_their_input(tmp_path):
    folder = sentence_transformers_folder(tmp_path, "bert")
    proc = run_pare(["inspect", folder])
    assert proc.returncode == 0, proc.stderr
    assert "extra modules" in proc.stdout and "2_Dense" in proc.stdout
    assert json.loads(run_pare(["inspect", folder, "--json"]).stdout)["extra_modules"] == ["2_Dense"]
    assert run_pare(["validate", folder]).returncode == 0
    out = tmp_path / "out"
    proc = run_pare(["trim", folder, out, "--drop-layers", "1", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert "copying '2_Dense' unchanged" in proc.stderr
    assert (out / "2_Dense" / "pytorch_model.bin").read_bytes() == (folder / "2_Dense" / "pytorch_model.bin").read_bytes()
    assert (out / "modules.json").is_file() and (out / "1_Pooling" / "config.json").is_file()
    llama = sentence_transformers_folder(tmp_path / "l", "llama-gqa-f32")
    expect_error(run_pare(["trim", llama, tmp_path / "narrow", "--hidden", "48"]), 1, "'2_Dense'", "reads the hidden size")


def test_an_encoder_plan_shows_no_kv_cache():
    proc = run_pare(["trim", FIXTURES / "bert", "--drop-layers", "1", "--dry-run"])
    assert proc.returncode == 0, proc.stderr
    assert "KV cache" not in proc.stdout
    plan = json.loads(run_pare(["trim", FIXTURES / "bert", "--drop-layers", "1", "--dry-run", "--json"]).stdout)
    assert plan["kv_cache_bytes_per_token"] == {"before": None, "after": None}
    assert "KV cache per token" in run_pare(["trim", LLAMA, "--drop-layers", "1", "--dry-run"]).stdout
