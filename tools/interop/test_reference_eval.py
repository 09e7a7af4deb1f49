"""Self-tests of tools/reference_eval.py, the yardstick `pare eval` is held against.

Every quantity is checked against a second, hand-written computation:
  - the loss equals a log_softmax/gather NLL written here, and transformers' labels loss;
  - the per-layer hooks equal output_hidden_states[i+1] for every layer but the last,
    and the final hidden states equal output_hidden_states[-1] and feed the LM head;
  - KL / top-1 / cosines of a model with itself are 0 / 1 / 1, and KL agrees with
    torch.nn.functional.kl_div on two different models;
  - ragged sequences, attention masks, windows and the pare-trim.json layer mapping.
"""

from __future__ import annotations

import json
import math
import sys

import pytest
import torch
import torch.nn.functional as F

from conftest import FIXTURES, REPO_ROOT, run_pare

sys.path.insert(0, str(REPO_ROOT / "tools"))
import reference_eval as R  # noqa: E402

CAUSAL = ["llama-gqa-f32", "llama-gqa-bf16", "qwen3", "qwen3-moe", "mixtral", "qwen2-moe", "olmo2", "gemma2", "gpt2"]

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def models():
    cache = {}

    def get(name):
        if name not in cache:
            cache[name] = R.load(FIXTURES / name)
        return cache[name]

    return get


def ids_for(model, n=3, t=16, seed=0):
    return torch.randint(0, model.config.vocab_size, (n, t), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("fixture", CAUSAL)
def test_loss_is_the_hand_written_nll(models, fixture):
    m = models(fixture)
    ids = ids_for(m)
    out = R.run(m, ids)
    logits = torch.stack(out.logits).double()
    # Hand-written: -log softmax at the next token, averaged over N*(T-1) predictions.
    shifted, targets = logits[:, :-1], ids[:, 1:]
    lse = torch.logsumexp(shifted, dim=-1)
    picked = torch.gather(shifted, -1, targets.unsqueeze(-1)).squeeze(-1)
    manual = float((lse - picked).mean())
    assert out.predicted == 3 * 15
    assert math.isclose(out.nll_mean, manual, rel_tol=1e-12)
    assert math.isclose(out.loss, manual, rel_tol=1e-6)
    with torch.no_grad():
        direct = m(input_ids=ids, labels=ids).loss
    assert math.isclose(float(direct), out.loss, rel_tol=1e-6)


@pytest.mark.parametrize("fixture", CAUSAL + ["bert"])
def test_layer_hooks_are_the_residual_stream(models, fixture):
    m = models(fixture)
    ids = ids_for(m, t=12)
    out = R.run(m, ids)
    with torch.no_grad():
        hs = m(input_ids=ids, output_hidden_states=True).hidden_states
    n_layers = len(out.layers)
    assert len(hs) == n_layers + 1
    for i in range(n_layers - 1):
        assert torch.equal(torch.stack(out.layers[i]), hs[i + 1]), f"layer {i}"
    # The last element of hidden_states is after the final norm (llama-like, gpt2's ln_f);
    # the hook gives the block's own output. For bert there is no final norm.
    assert torch.equal(torch.stack(out.hidden), hs[-1])
    if fixture == "bert":
        assert torch.equal(torch.stack(out.layers[-1]), hs[-1])
    else:
        assert not torch.allclose(torch.stack(out.layers[-1]), hs[-1])


@pytest.mark.parametrize("fixture", CAUSAL)
def test_final_hidden_states_feed_the_lm_head(models, fixture):
    m = models(fixture)
    out = R.run(m, ids_for(m, t=8))
    hidden, logits = torch.stack(out.hidden), torch.stack(out.logits)
    with torch.no_grad():
        head = m.get_output_embeddings()(hidden)
    cap = getattr(m.config, "final_logit_softcapping", None)
    if cap:
        head = torch.tanh(head / cap) * cap
    assert torch.allclose(head, logits, rtol=0, atol=1e-5)


@pytest.mark.parametrize("fixture", ["llama-gqa-f32", "qwen3-moe", "gemma2", "gpt2", "bert"])
def test_a_model_against_itself(models, fixture):
    m = models(fixture)
    out = R.run(m, ids_for(m))
    res = R.compare(out, out)
    if fixture != "bert":
        assert res["kl_mean"] == pytest.approx(0, abs=1e-12)
        assert res["kl_p95"] == pytest.approx(0, abs=1e-12)
        assert res["top1_agreement"] == 1.0
    assert res["cosine_mean"] == pytest.approx(1, abs=1e-12)
    assert [r["cosine"] for r in res["layers"]] == pytest.approx([1.0] * len(out.layers), abs=1e-12)


def test_kl_and_agreement_between_two_models(models):
    a, b = models("llama-gqa-f32"), models("llama-gqa-bf16")
    ids = ids_for(a)
    oa, ob = R.run(a, ids), R.run(b, ids)
    res = R.compare(oa, ob)  # KL(b ‖ a)
    la, lb = torch.cat(oa.logits).double(), torch.cat(ob.logits).double()
    kl = F.kl_div(torch.log_softmax(la, -1), torch.log_softmax(lb, -1), log_target=True, reduction="none").sum(-1)
    assert torch.allclose(res["kl"], kl, rtol=1e-9, atol=1e-15)
    assert res["kl_mean"] == pytest.approx(float(kl.mean()), rel=1e-9)
    # 95th percentile, linear interpolation between the order statistics (numpy's default).
    s = sorted(kl.tolist())
    pos = 0.95 * (len(s) - 1)
    lo = int(math.floor(pos))
    manual = s[lo] + (s[min(lo + 1, len(s) - 1)] - s[lo]) * (pos - lo)
    assert res["kl_p95"] == pytest.approx(manual, rel=1e-9)
    assert 0 < res["kl_mean"]
    agree = sum(int(x == y) for x, y in zip(la.argmax(-1).tolist(), lb.argmax(-1).tolist())) / len(la)
    assert res["top1_agreement"] == agree
    ha, hb = torch.cat(oa.hidden).double(), torch.cat(ob.hidden).double()
    cos = [float(x @ y / (x.norm() * y.norm())) for x, y in zip(ha, hb)]
    assert res["cosine_mean"] == pytest.approx(sum(cos) / len(cos), rel=1e-12)


def test_ragged_sequences_equal_separate_runs(models):
    m = models("qwen3")
    seqs = [torch.randint(0, 288, (n,), generator=torch.Generator().manual_seed(n)) for n in (9, 5, 9, 1)]
    out = R.run_sequences(m, seqs)
    assert out.lengths == [9, 5, 9, 1] and out.predicted == 8 + 4 + 8 + 0
    total = 0.0
    for i, s in enumerate(seqs):
        single = R.run(m, s[None])
        assert torch.allclose(out.logits[i], single.logits[0], rtol=0, atol=1e-5)
        assert torch.allclose(out.hidden[i], single.hidden[0], rtol=0, atol=1e-5)
        total += single.nll_sum
    assert out.nll_mean == pytest.approx(total / 20, rel=1e-9)
    assert out.loss is None


def test_bert_pooled_is_masked_mean_pooling(models):
    m = models("bert")
    lengths = [7, 12, 4]
    ids = torch.randint(1, 256, (3, 12), generator=torch.Generator().manual_seed(3))
    mask = torch.tensor([[1] * n + [0] * (12 - n) for n in lengths])
    ids = ids * mask
    out = R.run_sequences(m, [ids[i, :n] for i, n in enumerate(lengths)])
    with torch.no_grad():
        hidden = m(input_ids=ids, attention_mask=mask).last_hidden_state
    pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)
    assert torch.allclose(out.pooled, pooled, rtol=0, atol=1e-5)
    assert out.nll_mean is None and out.predicted == 0


def test_read_tokens_and_windows(tmp_path):
    from safetensors.torch import save_file

    ids = torch.arange(12, dtype=torch.int64).reshape(2, 6)
    mask = torch.tensor([[1, 1, 1, 1, 0, 0], [1, 1, 1, 1, 1, 1]])
    save_file({"input_ids": ids.to(torch.int32), "attention_mask": mask}, str(tmp_path / "t.safetensors"))
    seqs = R.read_tokens(tmp_path / "t.safetensors")
    assert [s.tolist() for s in seqs] == [[0, 1, 2, 3], [6, 7, 8, 9, 10, 11]]
    (tmp_path / "t.jsonl").write_text("[0, 1, 2, 3]\n[6,7,8,9,10,11]\n")
    assert [s.tolist() for s in R.read_tokens(tmp_path / "t.jsonl")] == [s.tolist() for s in seqs]
    w = R.windows(seqs, 4)
    assert [s.tolist() for s in w] == [[0, 1, 2, 3], [6, 7, 8, 9], [10, 11]]
    assert [s.tolist() for s in R.windows(seqs, 4, 2)] == [[0, 1, 2, 3], [6, 7, 8, 9]]


def test_layer_map_from_a_pare_trim(tmp_path):
    out = tmp_path / "t"
    proc = run_pare(["trim", FIXTURES / "qwen3-moe", out, "--drop-layers", "1", "--hidden", "24", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert R.layer_map(out, 4, 3) == [0, 2, 3]
    keep = R.hidden_keep(out)
    assert len(keep) == 24 and keep == sorted(keep)
    assert R.layer_map(FIXTURES / "qwen3-moe", 4, 4) == [0, 1, 2, 3]
    merged = tmp_path / "m"
    proc = run_pare(["trim", FIXTURES / "qwen3", merged, "--merge-layers", "0-1", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    assert R.layer_map(merged, 3, 2) == [1, 2]


def test_a_dropped_layer_of_a_copy_compares_to_the_right_layer(tmp_path, models):
    """Dropping the last layer: every remaining layer's output is the reference's layer of
    the same index, so every per-layer cosine is 1 while the logits differ."""
    out = tmp_path / "t"
    proc = run_pare(["trim", FIXTURES / "qwen3-moe", out, "--drop-layers", "3", "--quiet"])
    assert proc.returncode == 0, proc.stderr
    ref = models("qwen3-moe")
    ids = ids_for(ref)
    summary, _ = R.evaluate(out, list(ids), str(FIXTURES / "qwen3-moe"), ref_model=ref)
    assert [r["reference_layer"] for r in summary["layers"]] == [0, 1, 2]
    assert [r["cosine"] for r in summary["layers"]] == pytest.approx([1, 1, 1], abs=1e-6)
    assert summary["kl_mean"] > 0 and summary["top1_agreement"] < 1


def test_cli_prints_the_summary(tmp_path):
    import subprocess

    (tmp_path / "t.jsonl").write_text("[5, 6, 7, 8]\n[9, 10, 11]\n")
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "reference_eval.py"), FIXTURES / "gpt2", "--tokens",
         tmp_path / "t.jsonl", "--json", "--reference", FIXTURES / "gpt2", "--save", tmp_path / "o.safetensors"],
        capture_output=True, text=True, check=True,
    )
    s = json.loads(proc.stdout)
    assert (s["family"], s["sequences"], s["tokens"], s["predicted_tokens"]) == ("gpt2", 2, 7, 5)
    assert s["perplexity"] == pytest.approx(math.exp(s["nll_mean"]))
    assert s["kl_mean"] == pytest.approx(0, abs=1e-12) and s["top1_agreement"] == 1
