"""The trained fixtures (tools/train_fixtures.py) have learned something: transformers
scores their held-out text far below a uniform guess, their tokenizer loads and round-trips
text, and the two forms of the held-out tokens agree."""

from __future__ import annotations

import json
import math

import pytest
import torch

from conftest import FIXTURES

TRAINED = ["trained-llama", "trained-moe"]
HELDOUT = FIXTURES.parent / "heldout"


def heldout_ids(name: str) -> torch.Tensor:
    from safetensors.torch import load_file

    tensors = load_file(str(HELDOUT / f"{name}.safetensors"))
    assert list(tensors) == ["input_ids"]
    return tensors["input_ids"]


@pytest.mark.parametrize("name", TRAINED)
@torch.no_grad()
def test_heldout_perplexity_is_far_below_uniform(name):
    from transformers import AutoModelForCausalLM

    ids = heldout_ids(name)
    model = AutoModelForCausalLM.from_pretrained(FIXTURES / name, dtype=torch.float32).eval()
    vocab = model.config.vocab_size
    assert ids.dtype == torch.int64 and ids.dim() == 2 and ids.shape[1] == 128
    assert 0 <= int(ids.min()) and int(ids.max()) < vocab
    losses = [model(input_ids=w[None], labels=w[None]).loss.item() for w in ids]
    ppl = math.exp(sum(losses) / len(losses))
    assert math.isfinite(ppl) and ppl < vocab / 8, f"{name}: held-out perplexity {ppl:.2f}, vocab {vocab}"


@pytest.mark.parametrize("name", TRAINED)
def test_tokenizer_round_trips_heldout_text(name):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(FIXTURES / name)
    # From the held-out topic 'typesmapping' (note the U+2019 apostrophe and the double spaces).
    text = ("A dictionary\u2019s keys are *almost* arbitrary values.  Values that are\n"
            "not *hashable*, that is, values containing lists, dictionaries or\n"
            "other mutable types (that are compared by value rather than by object\n"
            "identity) may not be used as keys.")
    ids = tok(text)["input_ids"]
    assert tok.decode(ids) == text
    assert max(ids) < tok.vocab_size
    assert tok.eos_token == "<|endoftext|>"


@pytest.mark.parametrize("name", TRAINED)
def test_heldout_jsonl_matches_safetensors(name):
    ids = heldout_ids(name)
    lines = (HELDOUT / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == ids.tolist()
