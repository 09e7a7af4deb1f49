#!/usr/bin/env python3
"""Records what a pare binary writes for a fixed matrix of commands, and compares two records.

What it is for: proving that a restructuring of pare's internals left every output
byte-identical. The matrix runs convert, sparsify and trim over the committed fixtures
(Tests/Fixtures/models) plus a few inputs this script derives from them, and records for
every case the exact argv of each step, its exit code, the first line of its stderr, the
parsed stdout of `--json` runs (a plan printout is an output too) and the sha256 and size
of every file the case wrote. Refusals are recorded like successes: they are behaviour.

How to use it: record with the old binary, then compare the new binary against that record.

    python3 tools/same_outputs.py --pare OLD/pare --record /tmp/outputs-old.json
    python3 tools/same_outputs.py --pare .build/debug/pare --compare /tmp/outputs-old.json
    python3 tools/same_outputs.py --pare .build/debug/pare --compare /tmp/outputs-old.json --only sparsify/

--compare prints `same` or exactly what differs for each case and exits 1 if anything
does. --only SUBSTRING (repeatable) runs only the cases whose name contains it; --skip
leaves cases out the same way. --ignore-stderr does not count a changed first stderr line
(a reworded refusal) as a difference. Every case runs with the work folder as its cwd and
inputs under fixed relative names, because pare-trim.json and pare-sparsify.json record the
command line and the input path: records made from different work folders compare equal.
The work folder (--work, default a fresh folder under /tmp) is removed at the end unless
--keep.

A case the old binary refuses because it predates a family or a flag (36cbaab has no
qwen3-moe, olmo2, gemma2 or --hidden) is recorded as that refusal, and so differs against
a binary that has them: leave such cases out with --skip when only identity matters.

A developer tool, not part of CI or the test suite. Python 3.11 standard library only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from array import array
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "Tests" / "Fixtures" / "models"
PLANS = ROOT / "tools" / "interop" / "trim_plans"
GOLDENS_SCRIPT = ROOT / "tools" / "make_goldens.sh"
RECORD_VERSION = 1

# The fixed fixture list: a fixture added later should not silently change the matrix a
# record was made with (add it here and re-record the baseline).
FIXTURE_NAMES = ["bert", "gemma2", "gpt2", "llama-gqa-bf16", "llama-gqa-f32", "llama-sharded",
                 "mixtral", "olmo2", "qwen2-moe", "qwen3", "qwen3-moe"]
SPARSE_FORMATS = ["dense", "pare", "compressed-tensors", "cutlass"]
STEP_TIMEOUT = 120  # seconds; the fixtures are tiny, a hang is a bug worth seeing as one


# --------------------------------------------------------------------------- the matrix


@dataclass
class Case:
    """One named case: steps run in order in the work folder, each writing under `dir`."""
    name: str  # group/subject/variant: exactly three parts, so no case folder holds another
    steps: list[list[str]] = field(default_factory=list)

    @property
    def dir(self) -> str:
        return f"cases/{self.name}"

    def pare(self, *argv: str) -> None:
        self.steps.append(list(argv))

    def copy(self, src: str, dst: str) -> None:
        """A harness step (not pare): copies a model folder, for --in-place runs."""
        self.steps.append(["(copy)", src, dst])


def model(name: str) -> str:
    return f"models/{name}"


def convert_cases(fixtures: list[str]) -> list[Case]:
    cases = []
    for fx in fixtures:
        c = Case(f"convert/{fx}/casts")
        c.pare("convert", model(fx), f"{c.dir}/copy", "--quiet")  # no --dtype: lossless
        for dtype in ["f32", "f16", "bf16"]:
            c.pare("convert", model(fx), f"{c.dir}/{dtype}", "--dtype", dtype, "--quiet")
        cases.append(c)

        # Shard limits below every fixture's size, so each output has several shards.
        c = Case(f"convert/{fx}/shards-and-pare")
        c.pare("convert", model(fx), f"{c.dir}/resharded", "--max-shard-size", "60KB", "--quiet")
        c.pare("convert", model(fx), f"{c.dir}/resharded-bf16", "--dtype", "bf16", "--max-shard-size", "40KB",
               "--quiet")
        c.pare("convert", model(fx), f"{c.dir}/pare", "--format", "pare", "--quiet")
        c.pare("convert", f"{c.dir}/pare", f"{c.dir}/pare-back", "--quiet")
        c.pare("convert", model(fx), f"{c.dir}/pare-sharded-f16", "--format", "pare", "--dtype", "f16",
               "--max-shard-size", "50KB", "--quiet")
        c.pare("convert", f"{c.dir}/pare-sharded-f16", f"{c.dir}/pare-sharded-back", "--max-shard-size", "70KB",
               "--quiet")
        cases.append(c)

    c = Case("convert/llama-gqa-f32/misc")
    c.pare("convert", f"{model('llama-gqa-f32')}/model.safetensors", f"{c.dir}/single-f16.safetensors",
           "--dtype", "f16", "--quiet")
    c.pare("convert", f"{model('llama-sharded')}/model.safetensors.index.json", f"{c.dir}/from-index", "--quiet")
    c.pare("convert", model("llama-gqa-f32"), f"{c.dir}/level3", "--format", "pare", "--level", "3", "--quiet")
    c.pare("convert", model("llama-gqa-f32"), f"{c.dir}/exists", "--quiet")
    c.pare("convert", model("llama-gqa-f32"), f"{c.dir}/exists", "--dtype", "f16", "--quiet")  # refused: exists
    c.pare("convert", model("llama-gqa-f32"), f"{c.dir}/exists", "--dtype", "bf16", "--force", "--quiet")
    cases.append(c)

    c = Case("convert/llama-gqa-f32/refusals")
    c.pare("convert", model("llama-gqa-f32"), model("llama-gqa-f32"), "--quiet")  # OUT is IN
    c.pare("convert", model("llama-gqa-f32"), f"{model('llama-gqa-f32')}/inner", "--quiet")  # OUT inside IN
    c.pare("convert", model("llama-gqa-f32"), f"{c.dir}/bad-size", "--max-shard-size", "12XB", "--quiet")
    c.pare("convert", model("llama-gqa-f32"), f"{c.dir}/bad-dtype", "--dtype", "f8", "--quiet")
    c.pare("convert", model("llama-gqa-f32"), f"{c.dir}/level-without-pare", "--level", "3", "--quiet")
    c.pare("convert", f"{c.dir}/missing", f"{c.dir}/from-missing", "--quiet")
    cases.append(c)
    return cases


def sparsify_cases(fixtures: list[str]) -> list[Case]:
    cases = []
    for fx in fixtures:
        c = Case(f"sparsify/{fx}/formats")
        c.pare("sparsify", model(fx), f"{c.dir}/dry", "--pattern", "2:4", "--dry-run", "--json")
        for fmt in SPARSE_FORMATS:  # cutlass refuses f32 and these small shapes: recorded as such
            c.pare("sparsify", model(fx), f"{c.dir}/{fmt}", "--pattern", "2:4", "--format", fmt, "--quiet")
        cases.append(c)

        c = Case(f"sparsify/{fx}/wanda")
        c.pare("sparsify", model(fx), f"{c.dir}/dense", "--pattern", "2:4", "--score", "wanda",
               "--stats", stats_path(fx), "--quiet")
        cases.append(c)

    c = Case("sparsify/llama-gqa-f32/options")
    for pattern in ["4:8", "1:4"]:
        c.pare("sparsify", model("llama-gqa-f32"), f"{c.dir}/dense-{pattern.replace(':', 'of')}",
               "--pattern", pattern, "--quiet")
    c.pare("sparsify", model("llama-gqa-f32"), f"{c.dir}/pare-4of8", "--pattern", "4:8", "--format", "pare",
           "--quiet")
    c.pare("sparsify", model("llama-gqa-f32"), f"{c.dir}/targets", "--pattern", "2:4", "--targets", "weight",
           "--ignore", "embed|lm_head", "--quiet")
    c.pare("sparsify", model("llama-gqa-f32"), f"{c.dir}/ignore-attn", "--pattern", "2:4", "--ignore", "self_attn",
           "--format", "pare", "--quiet")
    c.pare("sparsify", model("llama-gqa-f32"), f"{c.dir}/sharded", "--pattern", "2:4", "--max-shard-size", "60KB",
           "--quiet")
    c.pare("sparsify", model("llama-gqa-f32"), f"{c.dir}/ct-wanda", "--pattern", "2:4", "--score", "wanda",
           "--stats", stats_path("llama-gqa-f32"), "--format", "compressed-tensors", "--quiet")
    cases.append(c)

    c = Case("sparsify/llama-gqa-f32/refusals")
    c.pare("sparsify", model("llama-gqa-f32"), f"{c.dir}/wanda-no-stats", "--pattern", "2:4", "--score", "wanda")
    c.pare("sparsify", model("llama-gqa-f32"), f"{c.dir}/bad-pattern", "--pattern", "4:4")
    c.pare("sparsify", model("llama-gqa-f32"), f"{c.dir}/ct-4of8", "--pattern", "4:8", "--format",
           "compressed-tensors")
    c.pare("sparsify", model("llama-gqa-f32"), f"{c.dir}/bogus-format", "--pattern", "2:4", "--format", "bogus")
    c.pare("sparsify", model("llama-gqa-f32"), f"{c.dir}/short-stats", "--pattern", "2:4", "--score", "wanda",
           "--stats", stats_path("qwen3"))  # another model's statistics: wrong names and lengths
    cases.append(c)

    # CUTLASS needs f16/bf16 weights with rows a multiple of 32 and columns of 64: only the
    # derived llama-2of4-bf16 has them (its f16 twin is made by pare convert, as the tests do).
    big = "llama-2of4-bf16"
    c = Case(f"sparsify/{big}/formats")
    c.pare("sparsify", model(big), f"{c.dir}/dry", "--pattern", "2:4", "--format", "cutlass", "--dry-run", "--json")
    for fmt in SPARSE_FORMATS:
        c.pare("sparsify", model(big), f"{c.dir}/{fmt}", "--pattern", "2:4", "--format", fmt, "--quiet")
    c.pare("sparsify", model(big), f"{c.dir}/cutlass-1of4", "--pattern", "1:4", "--format", "cutlass", "--quiet")
    c.pare("sparsify", model(big), f"{c.dir}/ct-1of4", "--pattern", "1:4", "--format", "compressed-tensors",
           "--quiet")
    c.pare("sparsify", model(big), f"{c.dir}/cutlass-4of8", "--pattern", "4:8", "--format", "cutlass", "--quiet")
    cases.append(c)

    c = Case(f"sparsify/{big}/f16")
    c.pare("convert", model(big), f"{c.dir}/f16", "--dtype", "f16", "--quiet")
    for fmt in ["cutlass", "compressed-tensors", "pare"]:
        c.pare("sparsify", f"{c.dir}/f16", f"{c.dir}/{fmt}", "--pattern", "2:4", "--format", fmt, "--quiet")
    cases.append(c)

    c = Case(f"sparsify/{big}/wanda")
    for fmt in ["cutlass", "compressed-tensors"]:
        c.pare("sparsify", model(big), f"{c.dir}/{fmt}", "--pattern", "2:4", "--score", "wanda",
               "--stats", stats_path(big), "--format", fmt, "--quiet")
    cases.append(c)
    return cases


def golden_recipes() -> list[tuple[str, list[str]]]:
    """(fixture, trim flags) of every case in tools/make_goldens.sh's CASES array, read from
    the script so this matrix follows it."""
    text = GOLDENS_SCRIPT.read_text()
    block = text[text.index("CASES=("):]
    block = block[:block.index("\n)")]
    return [(m.group(1), m.group(2).split()) for m in re.finditer(r'^\s*"([\w.-]+)\|([^"]*)"', block, re.M)]


def golden_name(flags: list[str]) -> str:
    """The goldens/ file name part of make_goldens.sh: tr -s ' .,-' '_', trimmed of '_'."""
    return re.sub(r"[ .,\-]+", "_", " ".join(flags)).strip("_")


def trim_cases(plans: list[Path]) -> list[Case]:
    cases = []
    for fx, flags in golden_recipes():
        # The plan printout, the trim, and its replay from the pare-trim.json it wrote.
        c = Case(f"trim/{fx}/golden-{golden_name(flags)}")
        c.pare("trim", model(fx), f"{c.dir}/dry", *flags, "--dry-run", "--json")
        c.pare("trim", model(fx), f"{c.dir}/out", *flags, "--quiet")
        c.pare("trim", model(fx), f"{c.dir}/replay", "--recipe", f"{c.dir}/out/pare-trim.json", "--quiet")
        cases.append(c)

    for plan in plans:
        fx, variant = plan.name.split(".")[0], plan.stem.split(".", 1)[1]
        c = Case(f"trim/{fx}/plan-{variant}")
        c.pare("trim", model(fx), f"{c.dir}/dry", "--recipe", recipe_path(plan), "--dry-run", "--json")
        c.pare("trim", model(fx), f"{c.dir}/out", "--recipe", recipe_path(plan), "--quiet")
        cases.append(c)
    if plans:
        # The plan files themselves are bare plans, not recipes: record how pare takes one.
        plan = plans[0]
        fx = plan.name.split(".")[0]
        c = Case(f"trim/{fx}/bare-plan-file")
        c.pare("trim", model(fx), f"{c.dir}/out", "--recipe", f"recipes/bare.{plan.name}", "--quiet")
        cases.append(c)

    def add(fx: str, variant: str, *steps: list[str]) -> None:
        c = Case(f"trim/{fx}/{variant}")
        for i, flags in enumerate(steps):
            c.pare("trim", model(fx), f"{c.dir}/out{i}", *flags)
        cases.append(c)

    # Merges with merged norms, and the other merges tools/interop/test_trim.py runs.
    add("llama-gqa-bf16", "merge-norms", ["--merge-layers", "0-1", "--merge-norms", "merge", "--kv-heads", "1",
                                          "--quiet"])
    add("bert", "merge-norms", ["--merge-layers", "0-1", "--merge-norms", "merge", "--quiet"])
    add("olmo2", "merge-norms", ["--merge-layers", "0-1", "--merge-norms", "merge", "--quiet"])
    add("qwen3", "merge-three", ["--merge-layers", "0-2", "--quiet"], ["--merge-layers", "0-1", "--merge-norms",
                                                                        "first", "--heads", "2", "--quiet"])
    add("gpt2", "merge-ffn", ["--merge-layers", "0-1", "--ffn", "0.25", "--quiet"])
    add("mixtral", "merge-experts", ["--merge-layers", "0-1", "--experts", "3", "--quiet"])
    add("qwen3-moe", "merge-heads", ["--merge-layers", "2-3", "--heads", "2", "--ffn", "0.5", "--quiet"])
    add("qwen2-moe", "shared-expert-ffn", ["--experts", "3", "--shared-expert-ffn", "20", "--expert-ffn", "16",
                                           "--quiet"])
    add("llama-sharded", "drop-heads", ["--drop-layers", "0", "--heads", "2", "--quiet"],
        ["--ffn", "0.5", "--max-shard-size", "60KB", "--quiet"])
    add("llama-gqa-f32", "output-options", ["--ffn", "0.5", "--no-hashes", "--quiet"],
        ["--kv-heads", "1", "--json"])  # a real run's --json plan (indices_final)
    add("mixtral", "expert-ffn-unaligned", ["--expert-ffn", "5", "--quiet"])  # warns about grouped_mm

    # Trim, then sparsify in the same pass.
    add("llama-gqa-f32", "sparsify", ["--ffn", "0.5", "--sparsify", "2:4", "--quiet"],
        ["--drop-layers", "1", "--sparsify", "4:8", "--format", "pare", "--quiet"])
    add("gpt2", "sparsify", ["--ffn", "0.5", "--sparsify", "2:4", "--quiet"])
    add("mixtral", "sparsify", ["--experts", "3", "--sparsify", "2:4", "--quiet"])
    add("qwen3", "recipe-sparsify", ["--recipe", "recipes/qwen3.wanda.json", "--quiet"],
        ["--recipe", "recipes/qwen3.steps.yaml", "--quiet"],
        ["--recipe", "recipes/qwen3.steps.yaml", "--ffn", "40", "--quiet"])  # a flag overrides the recipe

    # .pare output, and .pare input.
    add("llama-gqa-bf16", "format-pare", ["--heads", "2", "--format", "pare", "--quiet"])
    add("qwen2-moe", "format-pare", ["--experts", "2", "--format", "pare", "--max-shard-size", "60KB", "--quiet"])
    c = Case("trim/qwen3/from-pare")
    c.pare("convert", model("qwen3"), f"{c.dir}/pare", "--format", "pare", "--quiet")
    c.pare("trim", f"{c.dir}/pare", f"{c.dir}/out", "--drop-layers", "1", "--ffn", "0.5", "--quiet")
    c.pare("trim", f"{c.dir}/pare", f"{c.dir}/out-pare", "--heads", "2", "--format", "pare", "--quiet")
    cases.append(c)

    # --in-place on a copy: a trim swapped in, then a refused one that must leave it whole.
    c = Case("trim/llama-gqa-f32/in-place")
    c.copy(model("llama-gqa-f32"), f"{c.dir}/model")
    c.pare("trim", f"{c.dir}/model", "--in-place", "--drop-layers", "1", "--quiet")
    c.pare("trim", f"{c.dir}/model", "--in-place", "--heads", "3", "--quiet")
    cases.append(c)

    # --force: an existing OUT is refused, then replaced.
    c = Case("trim/llama-gqa-f32/force")
    c.pare("trim", model("llama-gqa-f32"), f"{c.dir}/out", "--ffn", "0.5", "--quiet")
    c.pare("trim", model("llama-gqa-f32"), f"{c.dir}/out", "--ffn", "0.25", "--quiet")
    c.pare("trim", model("llama-gqa-f32"), f"{c.dir}/out", "--ffn", "0.25", "--force", "--quiet")
    cases.append(c)

    # Unknown tensors: refused, kept with --keep-unknown, refused when their layer would move.
    add("bert-extra", "keep-unknown", ["--ffn", "32", "--quiet"], ["--ffn", "32", "--keep-unknown", "--quiet"])
    add("bert-extra-layer", "keep-unknown", ["--drop-layers", "0", "--keep-unknown", "--quiet"],
        ["--ffn", "32", "--keep-unknown", "--quiet"])

    # Refusals that teach (tools/interop/test_trim.py), and usage errors.
    add("gpt2", "refusals", ["--heads", "2"], ["--kv-heads", "1"])
    add("bert", "refusals", ["--heads", "2"])
    add("mixtral", "refusals", ["--experts", "1"], ["--experts", "9"], ["--kv-heads", "0"], ["--experts", "0"],
        [])
    add("llama-gqa-f32", "refusals", ["--heads", "3"], ["--drop-layers", "7"], ["--drop-layers", "0-1"],
        ["--ffn", "0"], ["--ffn", "1.5"])
    # --hidden refusals in cases of their own, so that --skip hidden leaves every --hidden run out.
    add("gpt2", "hidden-refusals", ["--hidden", "32"])
    add("bert", "hidden-refusals", ["--hidden", "16"])
    add("llama-gqa-f32", "hidden-refusals", ["--hidden", "50"])
    add("qwen2-moe", "refusals", ["--merge-layers", "1-2"], ["--shared-expert-ffn", "999"])
    add("qwen3-moe", "refusals", ["--shared-expert-ffn", "8"])
    add("olmo2", "refusals", ["--kv-heads", "1"], ["--heads", "2"])
    return cases


def build_matrix() -> list[Case]:
    plans = sorted(PLANS.glob("*.json"))
    cases = convert_cases(FIXTURE_NAMES) + sparsify_cases(FIXTURE_NAMES) + trim_cases(plans)
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), "duplicate case names"
    assert all(n.count("/") == 2 for n in names), "case names are group/subject/variant"
    return cases


# --------------------------------------------------------------------------- inputs


def stats_path(fx: str) -> str:
    return f"stats/{fx}.safetensors"


def recipe_path(plan: Path) -> str:
    return f"recipes/{plan.name}"


def read_header(path: Path) -> dict:
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(n))


def write_safetensors(path: Path, tensors: list[tuple[str, str, list[int], bytes]]) -> None:
    """Writes (name, dtype, shape, little-endian bytes) in the given order."""
    header, offset = {}, 0
    for name, dtype, shape, data in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
    header["__metadata__"] = {"format": "pt"}
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-aligned
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)) + raw)
        for *_, data in tensors:
            f.write(data)


def read_tensors(path: Path) -> list[tuple[str, str, list[int], bytes]]:
    header = read_header(path)
    blob = path.read_bytes()
    base = 8 + struct.unpack("<Q", blob[:8])[0]
    return [(k, v["dtype"], v["shape"], blob[base + v["data_offsets"][0]:base + v["data_offsets"][1]])
            for k, v in header.items() if k != "__metadata__"]


def make_stats(model_dir: Path, out: Path) -> None:
    """Wanda statistics pare can read: '<W>.input_norm' (F32, in_features) for every 2-D
    tensor of the model (pare ignores entries it does not need). The values are a fixed
    function of the tensor name, so the file is the same on every run and machine."""
    conv1d = json.loads((model_dir / "config.json").read_text()).get("model_type") == "gpt2"
    tensors = []
    for shard in sorted(model_dir.glob("*.safetensors")):
        for name, info in read_header(shard).items():
            if name == "__metadata__" or len(info["shape"]) != 2:
                continue
            n = info["shape"][0 if conv1d else 1]  # GPT-2's Conv1D weight is [in, out]
            seed = zlib.crc32(name.encode())
            values = [0.25 + ((seed + i * 2654435761) % 1000) / 250 for i in range(n)]
            tensors.append((name + ".input_norm", "F32", [n], struct.pack(f"<{n}f", *values)))
    write_safetensors(out, sorted(tensors))


def lcg_bf16(count: int, seed: int) -> array:
    """bf16 bit patterns of small signed normal numbers (2^-10 .. 2^-4) from a 64-bit LCG.
    Only 7 mantissa bits: ties inside groups of 4 happen, and tie rules are behaviour too."""
    out, x = array("H"), seed
    for _ in range(count):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        bits = x >> 48
        out.append(((bits & 1) << 15) | ((117 + (bits >> 1) % 7) << 7) | ((bits >> 4) & 0x7F))
    return out


# (row, first column of a group of 4 in layer 0's q_proj, positions that stay non-zero):
# the exact-zero groups of tools/make_sparse_fixtures.py, where CUTLASS metadata and the
# compressed-tensors bitmask pick positions by their own tie rules.
ZERO_GROUPS = [(0, 0, []), (0, 4, [3]), (0, 8, [2]), (0, 12, [1]), (0, 16, [0]), (1, 0, [0]), (1, 4, [1]),
               (1, 8, [2]), (1, 12, [3]), (1, 16, []), (2, 60, []), (3, 124, [1])]


def make_llama_2of4(out: Path) -> None:
    """A CUTLASS-sized bf16 Llama (hidden 128, intermediate 256, 4 heads, 2 kv heads of 32):
    every attention/MLP weight has rows a multiple of 32 and columns of 64, which no
    committed fixture has. Standard library only, so the bytes are fixed by this code."""
    hidden, inter, heads, kv, head_dim, layers, vocab = 128, 256, 4, 2, 32, 2, 320
    config = {
        "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
        "bos_token_id": 1, "dtype": "bfloat16", "eos_token_id": 2, "head_dim": head_dim, "hidden_act": "silu",
        "hidden_size": hidden, "initializer_range": 0.02, "intermediate_size": inter,
        "max_position_embeddings": 128, "mlp_bias": False, "model_type": "llama",
        "num_attention_heads": heads, "num_hidden_layers": layers, "num_key_value_heads": kv,
        "pretraining_tp": 1, "rms_norm_eps": 1e-05,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "tie_word_embeddings": False, "use_cache": True, "vocab_size": vocab,
    }
    shapes = [("lm_head.weight", [vocab, hidden]), ("model.embed_tokens.weight", [vocab, hidden])]
    for i in range(layers):
        p = f"model.layers.{i}."
        shapes += [(p + "input_layernorm.weight", [hidden]), (p + "mlp.down_proj.weight", [hidden, inter]),
                   (p + "mlp.gate_proj.weight", [inter, hidden]), (p + "mlp.up_proj.weight", [inter, hidden]),
                   (p + "post_attention_layernorm.weight", [hidden]),
                   (p + "self_attn.k_proj.weight", [kv * head_dim, hidden]),
                   (p + "self_attn.o_proj.weight", [hidden, heads * head_dim]),
                   (p + "self_attn.q_proj.weight", [heads * head_dim, hidden]),
                   (p + "self_attn.v_proj.weight", [kv * head_dim, hidden])]
    shapes.append(("model.norm.weight", [hidden]))
    tensors = []
    for name, shape in shapes:
        count = shape[0] * (shape[1] if len(shape) == 2 else 1)
        if len(shape) == 1:
            values = array("H", [0x3F80] * count)  # norms: 1.0
        else:
            values = lcg_bf16(count, zlib.crc32(name.encode()))
        if name == "model.layers.0.self_attn.q_proj.weight":
            for row, col, stay in ZERO_GROUPS:
                for j in range(4):
                    if j not in stay:
                        values[row * shape[1] + col + j] = 0
        if sys.byteorder != "little":
            values.byteswap()
        tensors.append((name, "BF16", shape, values.tobytes()))
    out.mkdir(parents=True)
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    write_safetensors(out / "model.safetensors", tensors)


def add_unknown_tensor(src: Path, out: Path, name: str, values: list[float]) -> None:
    """A copy of `src` whose model.safetensors also holds F32 tensor `name`, which no
    descriptor knows (for --keep-unknown)."""
    shutil.copytree(src, out)
    tensors = read_tensors(out / "model.safetensors")
    tensors.append((name, "F32", [len(values)], struct.pack(f"<{len(values)}f", *values)))
    write_safetensors(out / "model.safetensors", tensors)


def prepare_inputs(work: Path, plans: list[Path]) -> None:
    """models/ (copies, so no run can touch the checkout), the derived models, stats/ and
    recipes/, all under fixed names in the work folder."""
    models = work / "models"
    for fx in FIXTURE_NAMES:
        shutil.copytree(FIXTURES / fx, models / fx)
    make_llama_2of4(models / "llama-2of4-bf16")
    add_unknown_tensor(FIXTURES / "bert", models / "bert-extra", "extra.adapter.weight", [0.0, 1.0, 2.0])
    add_unknown_tensor(FIXTURES / "bert", models / "bert-extra-layer", "bert.encoder.layer.1.adapter.weight",
                       [1.0, 1.0])

    (work / "stats").mkdir()
    for fx in FIXTURE_NAMES + ["llama-2of4-bf16"]:
        make_stats(models / fx, work / stats_path(fx))

    recipes = work / "recipes"
    recipes.mkdir()
    for plan in plans:
        # pare's recipe takes explicit keep lists under "plan" (as pare-trim.json has them).
        body = {"plan": json.loads(plan.read_text())}
        (work / recipe_path(plan)).write_text(json.dumps(body, indent=2) + "\n")
    if plans:
        shutil.copyfile(plans[0], recipes / f"bare.{plans[0].name}")
    (recipes / "qwen3.wanda.json").write_text(json.dumps(
        {"ffn": 0.5, "sparsify": {"pattern": "2:4", "score": "wanda", "stats": stats_path("qwen3"),
                                  "ignore": "o_proj"}}, indent=2) + "\n")
    (recipes / "qwen3.steps.yaml").write_text(
        'drop_layers: "2"\nheads: 2\nffn: 0.75\nsparsify: "2:4"\n')


# --------------------------------------------------------------------------- running


def file_digests(root: Path) -> dict[str, dict]:
    """sha256 and size of every file under root by sorted relative path; an empty folder
    (a leftover of an interrupted write, say) is listed as 'path/'."""
    out = {}
    if not root.exists():
        return out
    for folder, dirs, files in os.walk(root):
        dirs.sort()
        rel = Path(folder).relative_to(root)
        if not dirs and not files and folder != str(root):
            out[f"{rel.as_posix()}/"] = {"dir": True}
        for name in sorted(files):
            data = (Path(folder) / name).read_bytes()
            out[(rel / name).as_posix()] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    return dict(sorted(out.items()))


def parse_stdout(text: str):
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return {"unparsed": text}


def run_step(pare: str, argv: list[str], work: Path) -> dict:
    if argv[0] == "(copy)":
        shutil.copytree(work / argv[1], work / argv[2])
        return {"argv": argv, "exit": 0}
    env = {**os.environ, "COLUMNS": "100", "TERM": "dumb", "NO_COLOR": "1"}  # fixed text layout
    try:
        proc = subprocess.run([pare, *argv], cwd=work, capture_output=True, env=env, timeout=STEP_TIMEOUT)
        code, out, err = proc.returncode, proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
    except subprocess.TimeoutExpired:
        code, out, err = "timeout", "", f"no exit after {STEP_TIMEOUT}s"
    step = {"argv": ["pare", *argv], "exit": code, "stderr": (err.strip().splitlines() or [""])[0]}
    if "--json" in argv:
        step["stdout"] = parse_stdout(out)
    return step


def run_case(pare: str, case: Case, work: Path) -> dict:
    (work / case.dir).mkdir(parents=True)  # pare wants OUT's parent to exist
    steps = [run_step(pare, argv, work) for argv in case.steps]
    return {"name": case.name, "steps": steps, "files": file_digests(work / case.dir)}


def run_matrix(pare: str, cases: list[Case], work: Path) -> tuple[list[dict], dict]:
    plans = sorted(PLANS.glob("*.json"))
    prepare_inputs(work, plans)
    inputs = {d: file_digests(work / d) for d in ["models", "stats", "recipes"]}
    results = []
    progress = sys.stderr.isatty()
    for i, case in enumerate(cases, 1):
        if progress:
            print(f"\r[{i}/{len(cases)}] {case.name:<70}", end="", file=sys.stderr, flush=True)
        results.append(run_case(pare, case, work))
    if progress:
        print("\r" + " " * 80 + "\r", end="", file=sys.stderr)
    after = {d: file_digests(work / d) for d in ["models", "stats", "recipes"]}
    if after != inputs:
        # pare must never write into an input; shown as a case of its own so it is compared.
        changed = sorted(f"{d}/{p}" for d in inputs for p in set(inputs[d]) | set(after[d])
                         if inputs[d].get(p) != after[d].get(p))
        results.append({"name": "inputs/modified/by-some-case", "steps": [], "files": {p: {} for p in changed}})
    return results, inputs


# --------------------------------------------------------------------------- comparing


def json_diffs(a, b, path: str = "$") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in list(a) + [k for k in b if k not in a]:
            if k not in b:
                out.append(f"{path}.{k}: only in base")
            elif k not in a:
                out.append(f"{path}.{k}: only in new")
            else:
                out += json_diffs(a[k], b[k], f"{path}.{k}")
        if not out and list(a) != list(b):
            out.append(f"{path}: key order {list(a)} -> {list(b)}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in json_diffs(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {json.dumps(a)[:120]} -> {json.dumps(b)[:120]}"]


def stdout_diffs(a, b) -> list[str]:
    if a == b:
        return []
    parsed = lambda x: isinstance(x, (dict, list)) and not (isinstance(x, dict) and "unparsed" in x)
    if not (parsed(a) and parsed(b)):  # one side printed no JSON (a refusal): say only that
        show = lambda x: "JSON" if parsed(x) else f"no JSON ({(x or {}).get('unparsed', '')[:60]!r})"
        return [f"stdout: {show(a)} -> {show(b)}"]
    diffs = json_diffs(a, b)
    return [f"stdout {d}" for d in diffs[:10]] + ([f"stdout: ... and {len(diffs) - 10} more"] if len(diffs) > 10 else [])


def grouped(paths: list[str]) -> list[str]:
    """'dense/{config.json, model.safetensors}' per top folder: a whole output folder that
    appears or vanishes reads as one line."""
    groups: dict[str, list[str]] = {}
    for p in paths:
        top, _, rest = p.partition("/")
        groups.setdefault(top if rest else "", []).append(rest or p)
    return [f"{top}/{{{', '.join(names)}}}" if top else ", ".join(names) for top, names in groups.items()]


def case_diffs(base: dict, new: dict, ignore_stderr: bool) -> list[str]:
    """Every difference between two results of the same case, one line each."""
    out = []
    if len(base["steps"]) != len(new["steps"]):
        out.append(f"{len(base['steps'])} steps -> {len(new['steps'])} (matrix changed?)")
    for i, (a, b) in enumerate(zip(base["steps"], new["steps"]), 1):
        lines = []
        if a["argv"] != b["argv"]:
            lines.append(f"argv in base: {' '.join(a['argv'])} (matrix changed?)")
        if a["exit"] != b["exit"]:
            lines.append(f"exit code {a['exit']} -> {b['exit']}")
        if not ignore_stderr and a.get("stderr") != b.get("stderr"):
            lines.append(f"stderr {a.get('stderr')!r}\n        -> {b.get('stderr')!r}")
        lines += stdout_diffs(a.get("stdout"), b.get("stdout"))
        if lines:
            out.append(f"step {i}: {' '.join(b['argv'])}")
            out += [f"    {line}" for line in lines]
    fa, fb = base["files"], new["files"]
    missing = [p for p in fa if p not in fb]
    extra = [p for p in fb if p not in fa]
    out += [f"files missing: {g}" for g in grouped(missing)]
    out += [f"files extra: {g}" for g in grouped(extra)]
    for p in sorted(set(fa) & set(fb)):
        if fa[p] != fb[p]:
            a, b = fa[p], fb[p]
            out.append(f"file differs: {p}: sha256 {a.get('sha256', '')[:12]} -> {b.get('sha256', '')[:12]}, "
                       f"size {a.get('size')} -> {b.get('size')}")
    return out


def compare(base_record: dict, results: list[dict], inputs: dict, ignore_stderr: bool) -> int:
    base = {c["name"]: c for c in base_record["cases"]}
    if base_record.get("inputs") != inputs:
        print("note: the inputs (fixtures, derived models, stats or recipes) differ from the base record's;"
              " differences below may come from them")
    differing = 0
    for result in results:
        name = result["name"]
        if name not in base:
            print(f"DIFFERS {name}\n    not in the base record")
            differing += 1
            continue
        diffs = case_diffs(base[name], result, ignore_stderr)
        if diffs:
            differing += 1
            print(f"DIFFERS {name}")
            for d in diffs:
                print(f"    {d}")
        else:
            print(f"same    {name}")
    print(f"{len(results)} cases: {len(results) - differing} same, {differing} differ")
    return 1 if differing else 0


# --------------------------------------------------------------------------- main


def select(cases: list[Case], only: list[str], skip: list[str]) -> list[Case]:
    return [c for c in cases if (not only or any(s in c.name for s in only)) and not any(s in c.name for s in skip)]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pare", required=True, help="the pare binary to run")
    ap.add_argument("--record", metavar="OUT.json", help="write this run's record here")
    ap.add_argument("--compare", metavar="BASE.json", help="compare this run with a record")
    ap.add_argument("--only", action="append", default=[], metavar="SUBSTRING",
                    help="run only cases whose name contains it (repeatable)")
    ap.add_argument("--skip", action="append", default=[], metavar="SUBSTRING",
                    help="leave out cases whose name contains it (repeatable)")
    ap.add_argument("--ignore-stderr", action="store_true", help="a changed first stderr line is no difference")
    ap.add_argument("--work", metavar="DIR", help="work folder (default: a new folder under /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work folder")
    ap.add_argument("--list", action="store_true", help="list the case names and exit")
    args = ap.parse_args()

    cases = select(build_matrix(), args.only, args.skip)
    if args.list:
        print("\n".join(c.name for c in cases))
        return 0
    if not (args.record or args.compare):
        ap.error("give --record OUT.json, --compare BASE.json, or both")
    pare = str(Path(args.pare).resolve())
    if not os.access(pare, os.X_OK):
        ap.error(f"--pare {pare} is not an executable")
    base_record = json.loads(Path(args.compare).read_text()) if args.compare else None
    if base_record is not None and base_record.get("record_version") != RECORD_VERSION:
        ap.error(f"{args.compare} is not a record of this script's version {RECORD_VERSION}")

    if args.work:
        work = Path(args.work).resolve()
        if work.exists() and any(work.iterdir()):
            ap.error(f"--work {work} is not empty")
        work.mkdir(parents=True, exist_ok=True)
    else:
        work = Path(tempfile.mkdtemp(prefix="pare-same-outputs-", dir="/tmp"))
    started = time.monotonic()
    try:
        results, inputs = run_matrix(pare, cases, work)
    finally:
        if args.keep:
            print(f"work folder kept: {work}", file=sys.stderr)
        else:
            shutil.rmtree(work, ignore_errors=True)
    seconds = time.monotonic() - started
    version = subprocess.run([pare, "--version"], capture_output=True, text=True).stdout.strip()
    summary = (f"ran {len(cases)} cases ({sum(len(c.steps) for c in cases)} commands) with {pare} ({version})"
               f" in {seconds:.1f}s")

    status = 0
    if args.record:
        record = {"record_version": RECORD_VERSION, "pare": pare, "pare_version": version,
                  "selection": {"only": args.only, "skip": args.skip}, "seconds": round(seconds, 1),
                  "inputs": inputs, "cases": results}
        Path(args.record).write_text(json.dumps(record, indent=1) + "\n")
        summary += f"; wrote {args.record}"
    if base_record is not None:
        status = compare(base_record, results, inputs, args.ignore_stderr)
    print(summary)
    return status


if __name__ == "__main__":
    sys.exit(main())
