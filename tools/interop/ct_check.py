#!/usr/bin/env python3
"""The compressed-tensors proof, run under .venv-ct ($PARE_CT_PYTHON: transformers 4.57 +
compressed-tensors 0.14.0.1, see tools/requirements-ct.txt). test_sparsify.py calls it as
a subprocess; it is not a test module itself.

    ct_check.py JOBS.json      ->  prints {job id: {"errors": [...], "facts": {...}}} as JSON

JOBS.json is a list of jobs:
    {"id": "...",
     "folder": "<a compressed-tensors output to check (pare's)>",
     "reference": "<the dense reference: the same model with the mask applied, safetensors>",
     "inputs": "<input ids .npy>",            # optional, with "logits"
     "logits": "<reference logits .npy>",     # from the main venv (transformers 5.x)
     "logits_tol": 1e-4,                      # max |diff| allowed against that .npy
     "compare_writer": true}                  # also compress the reference with the package
                                              # itself and require identical files + config

For every job, against the real package:
  1. ModelCompressor.from_pretrained(folder) finds a sparse-24-bitmask sparsity_config;
  2. the package's own decompressor gives back every tensor of the reference, same
     names, dtypes, shapes and bytes (nothing more, nothing less);
  3. transformers 4.57 loads the folder (dtype = the weights' dtype; it would pick float16
     otherwise) with no missing / unexpected / mismatched key, and every weight of the
     loaded model equals the reference bit for bit (catches weights left at random init);
  4. its logits equal those of the reference folder loaded by the same transformers
     (torch.equal) and are within logits_tol of the main venv's reference logits;
  5. compare_writer: ModelCompressor.compress on the reference, with the folder's own
     sparsity_config, yields exactly the folder's tensors (names, dtypes, shapes, bytes),
     and update_config writes the folder's quantization_config (global_sparsity aside,
     which only has to be a number in [0, 1]).
An empty "errors" list means the job passed. Exit status 0 unless the script itself broke.
"""

from __future__ import annotations

import json
import sys
import tempfile
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

import sparse_reference as R  # noqa: E402

INT_OF = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def raw(t: torch.Tensor) -> bytes:
    t = t.detach().contiguous().reshape(-1)
    return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def compare_tensors(got: dict, want: dict, what: str, errors: list) -> None:
    if set(got) != set(want):
        extra, missing = sorted(set(got) - set(want)), sorted(set(want) - set(got))
        errors.append(f"{what}: names differ; extra {extra[:6]}, missing {missing[:6]}")
    for name in sorted(set(got) & set(want)):
        a, b = got[name], want[name]
        if a.dtype != b.dtype or tuple(a.shape) != tuple(b.shape):
            errors.append(f"{what}: {name}: {a.dtype}{list(a.shape)} != reference {b.dtype}{list(b.shape)}")
        elif raw(a) != raw(b):
            x, y = a.reshape(-1), b.reshape(-1)
            i = int((x.view(INT_OF[x.element_size()]) != y.view(INT_OF[y.element_size()])).nonzero()[0])
            errors.append(f"{what}: {name}: first difference at flat index {i}: {x[i].item()!r} != reference {y[i].item()!r}")


def weight_dtype(tensors: dict) -> torch.dtype:
    for t in tensors.values():
        if t.dtype in R.FLOAT_DTYPES and t.dim() == 2:
            return t.dtype
    return torch.float32


def load_457(folder, dtype):
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    assert transformers.__version__.startswith("4."), transformers.__version__
    arch = json.loads((Path(folder) / "config.json").read_text())["architectures"][0]
    auto = transformers.AutoModelForMaskedLM if arch.endswith("ForMaskedLM") else transformers.AutoModelForCausalLM
    model, info = auto.from_pretrained(str(folder), torch_dtype=dtype, output_loading_info=True)
    return model.eval(), {k: list(v) for k, v in info.items() if v}


@torch.no_grad()
def logits_of(model, ids: torch.Tensor) -> torch.Tensor:
    return model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits


def check(job: dict) -> tuple[list, dict]:
    from compressed_tensors.compressors import ModelCompressor

    errors, facts = [], {}
    folder, reference = Path(job["folder"]), Path(job["reference"])
    ref_tensors, _ = R.read_folder(reference)
    dtype = weight_dtype(ref_tensors)

    # 1. the config names the compressor
    compressor = ModelCompressor.from_pretrained(str(folder))
    if compressor is None or compressor.sparsity_compressor is None:
        return [f"{folder}: ModelCompressor finds no sparsity_config in config.json"], facts
    facts["sparsity_config"] = compressor.sparsity_config.model_dump()
    facts["compressor"] = type(compressor.sparsity_compressor).__name__
    if facts["compressor"] != "Sparse24BitMaskCompressor":
        errors.append(f"compressor is {facts['compressor']}, expected Sparse24BitMaskCompressor")

    # 2. the package's decompressor gives back the reference
    decompressed = dict(compressor.sparsity_compressor.decompress(str(folder)))
    compare_tensors(decompressed, ref_tensors, "decompressed", errors)

    # 3. transformers 4.57 loads it with the reference's weights
    model, problems = load_457(folder, dtype)
    if problems:
        errors.append(f"transformers 4.57 loading problems: {problems}")
    state = model.state_dict()
    loaded = {n: state[n] for n in ref_tensors if n in state}
    facts["weights_compared_after_load"] = len(loaded)
    compare_tensors(loaded, {n: ref_tensors[n] for n in loaded}, "loaded by transformers 4.57", errors)
    stored = set(R.read_folder(folder)[0])
    targets = [n for n in decompressed if n.endswith(".weight") and n[: -len(".weight")] + ".compressed" in stored]
    facts["compressed_weights"] = len(targets)
    missing_targets = [n for n in targets if n not in loaded]
    if missing_targets:
        errors.append(f"compressed weights not found in the loaded model: {missing_targets[:5]}")

    # 4. logits
    if job.get("inputs"):
        ids = torch.from_numpy(np.load(job["inputs"]))
        got = logits_of(model, ids)
        ref_model, ref_problems = load_457(reference, dtype)
        if ref_problems:
            errors.append(f"reference folder: transformers 4.57 loading problems: {ref_problems}")
        want = logits_of(ref_model, ids)
        if not torch.equal(got, want):
            errors.append(f"logits differ from the reference loaded by transformers 4.57: max |diff| "
                          f"{float((got.float() - want.float()).abs().max()):.3g}")
        if job.get("logits"):
            main = torch.from_numpy(np.load(job["logits"]))
            diff = float((got.float() - main.float()).abs().max())
            facts["max_abs_diff_vs_main_venv_logits"] = diff
            if diff > job.get("logits_tol", 1e-4):
                errors.append(f"logits differ from the main venv's reference logits by {diff:.3g} "
                              f"(> {job.get('logits_tol', 1e-4)})")

    # 5. the package's own writer, with the folder's own config, writes the same thing
    if job.get("compare_writer"):
        ours, _ = R.read_folder(folder)
        with tempfile.TemporaryDirectory() as tmp:
            R.ct_compress_folder(reference, tmp, sparsity_config=compressor.sparsity_config)
            theirs, _ = R.read_folder(tmp)
            compare_tensors(ours, theirs, "compressed files vs compressed-tensors' own compressor", errors)
            want_q = json.loads((Path(tmp) / "config.json").read_text())["quantization_config"]
        got_q = json.loads((folder / "config.json").read_text())["quantization_config"]
        gs = got_q.get("sparsity_config", {}).get("global_sparsity")
        if not isinstance(gs, (int, float)) or not 0 <= gs <= 1:
            errors.append(f"sparsity_config.global_sparsity is {gs!r}, expected a number in [0, 1]")
        for q in (got_q, want_q):
            q.get("sparsity_config", {}).pop("global_sparsity", None)
        if got_q != want_q:
            errors.append(f"quantization_config {json.dumps(got_q, sort_keys=True)} != what compressed-tensors "
                          f"writes {json.dumps(want_q, sort_keys=True)} (global_sparsity aside)")
    return errors, facts


def main(argv) -> int:
    jobs = json.loads(Path(argv[1]).read_text())
    results = {}
    for job in jobs:
        try:
            errors, facts = check(job)
        except Exception:  # a broken job is a failed job, with its traceback
            errors, facts = [traceback.format_exc()], {}
        results[job["id"]] = {"errors": errors, "facts": facts}
    json.dump(results, sys.stdout, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
