"""`pare tokenize` (and `--text` on eval and calibrate) against the `tokenizers` library.

For every tokenizer kind in Tests/Fixtures/tokenizers/ (trained by
`tools/make_fixtures.py --only tokenizers`) and the real all-MiniLM-L6-v2 tokenizer, pare's
ids must equal `Tokenizer.from_file(...).encode(text).ids` (truncation and padding off)
byte for byte:
- case by case on a corpus made to break tokenizers (one JSON line per case, so a failure
  names the case);
- on raw bytes that are not UTF-8 (pare replaces them as Python's errors="replace" does);
- on 1 MB of English from CPython's `pydoc_data.topics`, as one document.
Then the windowing options, `eval --text` against `eval --tokens`, transformers'
AutoTokenizer on tokenizer_config.json's add_bos/add_eos flags, and a refusal per
unsupported component.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from conftest import REPO_ROOT, describe, expect_error, run_pare

FIXTURES = REPO_ROOT / "Tests" / "Fixtures" / "tokenizers"
KINDS = sorted(p.name for p in FIXTURES.iterdir() if (p / "tokenizer.json").is_file())
TRAINED_LLAMA = REPO_ROOT / "Tests" / "Fixtures" / "models" / "trained-llama"

# Each case is one document. Special tokens of every family appear inside text; a
# tokenizer without them must treat them as text.
TORTURE = {
    "plain": "Hello world",
    "contractions": "I'm here, you're there; IT'S ok, WE'LL see, they\u2019re, can't won't I'd 'S 'Ll",
    "folding": "\u017f's K'll \u212a's '\u017f 'S x'\u017f it'\u017ftuff IT'STUFF",
    "accents precomposed": "Cr\u00e8me br\u00fbl\u00e9e, na\u00efve caf\u00e9, fa\u00e7ade, \u00c5ngstr\u00f6m, Stra\u00dfe",
    "accents decomposed": "Cre\u0300me bru\u0302le\u0301e cafe\u0301",
    "cjk": "\u65e5\u672c\u8a9e\u306e\u30c6\u30ad\u30b9\u30c8\u3001\u4e2d\u6587\u5b57\u7b26\u3002\ud55c\uad6d\uc5b4",
    "arabic": "\u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 123",
    "devanagari": "\u0928\u092e\u0938\u094d\u0924\u0947 \u0926\u0941\u0928\u093f\u092f\u093e",
    "thai": "\u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a",
    "emoji": "\U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 family \U0001F44D\U0001F3FD \U0001F1EB\U0001F1F7 \U0001F3F3\ufe0f\u200d\U0001F308!",
    "whitespace runs": "tabs\t\tand\n\n\nnewlines  \r\n  spaces     end   \n\n",
    "unicode spaces": "x\u00a0y\u3000z\u2009w\u2028v\u0085u\u200az",
    "digits": "1234567890123456789 and 3.14159 and 007, 1,000,000",
    "special tokens": "<|endoftext|>after<|endoftext|> <|endoftext|> x <s>Hello</s> <s> [CLS] x [SEP] [MASK] "
                      "<|begin_of_text|>hi<|eot_id|> <|im_start|>user\nhi<|im_end|> <unk>",
    "control": "ctrl\x01\x02\x7f\x1b[0m\x00nul",
    "replacement char": "repl\ufffd\ufffd",
    "empty": "",
    "spaces only": "   ",
    "newline only": "\n",
    "long word": "a" * 300 + " " + "antidisestablishmentarianism" * 5,
    "casing": "\u0130stanbul \u03a3\u0391\u03a3 \u00df \u01c5 \u1e9e",
    "edges": "  leading and trailing  ",
    "punctuation": "\"quoted\" (parens) [brackets] {braces} e-mail: a.b@c.de, https://x.y/z?q=1&r=2 \u2014 \u2026 \u00bf\u00a1",
    "code": "def f(x):\n    return x**2  # comment\n\tif a != b: pass\n",
    "zero width": "\u200b\u200d\ufeffzero widths\u2060",
    "mixed": "mixed\u65e5\u672cEnglish\u4e2d\u6587123abc\u0645\u0631\u062d\u0628\u0627",
}


@pytest.fixture(scope="module")
def minilm() -> Path:
    from test_eval import ensure_minilm

    return ensure_minilm()


def folders(minilm_folder: Path | None = None) -> list:
    return [pytest.param(FIXTURES / k, id=k) for k in KINDS] + [pytest.param("minilm", id="all-MiniLM-L6-v2")]


def resolve(folder, minilm_path) -> Path:
    return minilm_path if folder == "minilm" else folder


def reference(folder: Path) -> Tokenizer:
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.no_truncation()
    tok.no_padding()
    return tok


def tokenize(folder, text_file, out, *extra) -> dict:
    proc = run_pare(["tokenize", folder, "--text", text_file, "-o", out, "--json", *extra], timeout=300)
    assert proc.returncode == 0, describe(proc)
    return json.loads(proc.stdout)


def rows(out: Path) -> list[list[int]]:
    t = load_file(str(out))
    ids, mask = t["input_ids"], t["attention_mask"]
    assert ids.dtype.name == "int64" and mask.dtype == ids.dtype and mask.shape == ids.shape
    return [row[m.astype(bool)].tolist() for row, m in zip(ids, mask)]


def first_difference(tok: Tokenizer, got: list[int], want: list[int]) -> str:
    k = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), min(len(got), len(want)))
    piece = lambda ids: [tok.id_to_token(i) for i in ids]  # noqa: E731
    return (f"first difference at token {k} of {len(want)} (pare has {len(got)}): "
            f"pare {piece(got[max(0, k - 3):k + 4])} vs tokenizers {piece(want[max(0, k - 3):k + 4])}")


@pytest.mark.parametrize("folder", folders())
def test_torture_corpus_ids_equal_tokenizers(folder, minilm, tmp_path):
    folder = resolve(folder, minilm)
    corpus = tmp_path / "torture.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in TORTURE.values()), encoding="utf-8")
    summary = tokenize(folder, corpus, tmp_path / "ids.safetensors")
    assert summary["json_lines"] is True and summary["documents"] == len(TORTURE)
    tok = reference(folder)
    got = rows(tmp_path / "ids.safetensors")
    failures = []
    for (name, text), ids in zip(TORTURE.items(), got):
        want = tok.encode(text).ids
        if ids != want:
            failures.append(f"{name}: {first_difference(tok, ids, want)}")
    assert not failures, "\n".join(failures)
    assert summary["tokens"] == sum(len(tok.encode(t).ids) for t in TORTURE.values())


@pytest.mark.parametrize("folder", folders())
def test_invalid_utf8_is_replaced_as_python_does(folder, minilm, tmp_path):
    folder = resolve(folder, minilm)
    raw = (b"valid \xc3\xa9 then a lone continuation \x80, a truncated \xe2\x82 sequence, an overlong \xc0\xaf, "
           b"a surrogate \xed\xa0\x80, beyond U+10FFFF \xf4\x90\x80\x80, and \xff\xfe end\n")
    path = tmp_path / "bad.txt"
    path.write_bytes(raw)
    summary = tokenize(folder, path, tmp_path / "ids.safetensors")
    assert summary["json_lines"] is False and summary["documents"] == 1
    tok = reference(folder)
    want = tok.encode(raw.decode("utf-8", errors="replace")).ids
    got = rows(tmp_path / "ids.safetensors")[0]
    assert got == want, first_difference(tok, got, want)


def english_megabyte() -> str:
    import pydoc_data.topics as topics

    text = "\n\n".join(topics.topics[k] for k in sorted(topics.topics))
    while len(text.encode()) < 1_000_000:
        text = text + "\n\n" + text
    data = text.encode()[:1_000_000]
    return data.decode("utf-8", errors="ignore")  # cut at a character boundary


@pytest.mark.parametrize("folder", folders())
def test_one_megabyte_of_english_equals_tokenizers(folder, minilm, tmp_path):
    folder = resolve(folder, minilm)
    text = english_megabyte()
    path = tmp_path / "english.txt"
    path.write_bytes(text.encode())
    summary = tokenize(folder, path, tmp_path / "ids.safetensors")
    tok = reference(folder)
    want = tok.encode(text).ids
    got = rows(tmp_path / "ids.safetensors")[0]
    assert summary["text_bytes"] > 999_000 and summary["tokens"] == len(want)
    assert got == want, first_difference(tok, got, want)


def test_windows_join_documents_and_cut_them(tmp_path):
    folder = FIXTURES / "llama3-split"
    corpus = tmp_path / "docs.jsonl"
    texts = [f"Document number {i}: " + "words " * (7 * i + 3) for i in range(12)]
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    tok = reference(folder)
    stream = [i for t in texts for i in tok.encode(t).ids]

    tokenize(folder, corpus, tmp_path / "w.safetensors", "--seq-len", 16)
    windows = rows(tmp_path / "w.safetensors")
    assert windows == [stream[k:k + 16] for k in range(0, len(stream), 16)]

    tokenize(folder, corpus, tmp_path / "w3.safetensors", "--seq-len", 16, "--samples", 3)
    assert rows(tmp_path / "w3.safetensors") == windows[:3]

    drawn = {}
    for run, seed in enumerate((1, 1, 2)):
        out = tmp_path / f"s{run}.safetensors"
        summary = tokenize(folder, corpus, out, "--seq-len", 16, "--samples", 6, "--seed", seed)
        assert summary["sequences"] == 6
        got = rows(out)
        assert all(len(w) == 16 for w in got)
        joined = ",".join(map(str, stream))
        assert all(",".join(map(str, w)) in joined for w in got), "a drawn window is not a slice of the joined ids"
        drawn.setdefault(seed, []).append(got)
    assert drawn[1][0] == drawn[1][1], "the same seed drew different windows"
    assert drawn[2][0] != drawn[1][0], "another seed drew the same windows"
    raw = (tmp_path / "s2.safetensors").read_bytes()
    meta = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])["__metadata__"]
    assert meta["seed"] == "2" and meta["seq_len"] == "16" and meta["documents"] == "12"


def test_eval_text_equals_eval_on_tokenize_output(tmp_path):
    text = english_megabyte()[:30_000]
    path = tmp_path / "heldout.txt"
    path.write_text(text, encoding="utf-8")
    tokenize(TRAINED_LLAMA, path, tmp_path / "ids.safetensors", "--seq-len", 64)
    runs = []
    for source in (["--text", path, "--seq-len", 64], ["--tokens", tmp_path / "ids.safetensors"]):
        proc = run_pare(["eval", TRAINED_LLAMA, *source, "--json"], timeout=600)
        assert proc.returncode == 0, describe(proc)
        runs.append(json.loads(proc.stdout))
    assert runs[0]["tokens"] == runs[1]["tokens"] and runs[0]["sequences"] == runs[1]["sequences"]
    assert runs[0]["perplexity"] == runs[1]["perplexity"]
    # The trained model reads its own tokenizer's ids: text like its training text is easy.
    assert runs[0]["perplexity"] < 200

    proc = run_pare(["calibrate", TRAINED_LLAMA, "--text", path, "--seq-len", 32, "--samples", 4, "--seed", 0,
                     "-o", tmp_path / "stats.safetensors", "--json"], timeout=600)
    assert proc.returncode == 0, describe(proc)
    summary = json.loads(proc.stdout)
    assert summary["sequences"] == 4 and summary["tokens"] == 128

    # trim --calibrate reads --text the same way: the same channels as from the token file.
    outputs = []
    for k, source in enumerate((["--text", path, "--seq-len", 64], ["--tokens", tmp_path / "ids.safetensors"])):
        out = tmp_path / f"trim{k}"
        proc = run_pare(["trim", TRAINED_LLAMA, out, "--ffn", "0.5", "--calibrate", *source, "--quiet"], timeout=600)
        assert proc.returncode == 0, describe(proc)
        outputs.append((out / "model.safetensors").read_bytes())
    assert outputs[0] == outputs[1]


@pytest.mark.parametrize("kind", ["llama2-sentencepiece", "mistral-metaspace"])
@pytest.mark.parametrize("bos,eos", [(True, False), (False, True)])
def test_tokenizer_config_flags_change_no_ids(kind, bos, eos, tmp_path):
    """transformers 5's AutoTokenizer follows tokenizer.json's template whatever
    add_bos_token/add_eos_token say, as `tokenizers` and pare do."""
    import transformers

    folder = tmp_path / kind
    shutil.copytree(FIXTURES / kind, folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config.update(add_bos_token=bos, add_eos_token=eos)
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    text = "Hello world, once more."
    path = tmp_path / "t.txt"
    path.write_text(text)
    tokenize(folder, path, tmp_path / "ids.safetensors")
    auto = transformers.AutoTokenizer.from_pretrained(str(folder))
    assert rows(tmp_path / "ids.safetensors")[0] == auto(text).input_ids == reference(folder).encode(text).ids


def edit(tmp_path, kind, change) -> Path:
    folder = tmp_path / "bad"
    shutil.copytree(FIXTURES / kind, folder)
    data = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    change(data)
    (folder / "tokenizer.json").write_text(json.dumps(data), encoding="utf-8")
    return folder


UNSUPPORTED = {
    "Unigram model": ("gpt2-bytelevel", lambda d: d.update(model={"type": "Unigram", "unk_id": 0, "vocab": [["a", 0.0]]}), "'Unigram'"),
    "WordLevel model": ("gpt2-bytelevel", lambda d: d.update(model={"type": "WordLevel", "vocab": {"a": 0}, "unk_token": "a"}), "'WordLevel'"),
    "Precompiled normalizer": ("llama2-sentencepiece", lambda d: d.update(normalizer={"type": "Precompiled", "precompiled_charsmap": "AA=="}), "'Precompiled'"),
    "Nmt normalizer": ("bert-wordpiece", lambda d: d.update(normalizer={"type": "Nmt"}), "'Nmt'"),
    "UnicodeScripts pre-tokenizer": ("gpt2-bytelevel", lambda d: d.update(pre_tokenizer={"type": "UnicodeScripts"}), "'UnicodeScripts'"),
    "Whitespace pre-tokenizer": ("bert-wordpiece", lambda d: d.update(pre_tokenizer={"type": "Whitespace"}), "'Whitespace'"),
    "lookbehind in a Split": ("llama3-split", lambda d: d["pre_tokenizer"]["pretokenizers"][0].update(pattern={"Regex": "(?<=a)b"}), "lookbehind"),
    "Unicode script property": ("qwen2-nfc", lambda d: d["pre_tokenizer"]["pretokenizers"][0].update(pattern={"Regex": "\\p{Han}+"}), "'Han'"),
    "possessive quantifier": ("llama3-split", lambda d: d["pre_tokenizer"]["pretokenizers"][0].update(pattern={"Regex": "\\p{N}++"}), "possessive"),
    "unknown post-processor": ("bert-wordpiece", lambda d: d.update(post_processor={"type": "Mystery"}), "'Mystery'"),
    "BPE dropout": ("gpt2-bytelevel", lambda d: d["model"].update(dropout=0.1), "dropout"),
}


@pytest.mark.parametrize("case", list(UNSUPPORTED))
def test_unsupported_component_is_named(case, tmp_path):
    kind, change, named = UNSUPPORTED[case]
    folder = edit(tmp_path, kind, change)
    text = tmp_path / "t.txt"
    text.write_text("hello")
    proc = run_pare(["tokenize", folder, "--text", text, "-o", tmp_path / "ids.safetensors"])
    expect_error(proc, 1, named, "tokenizer.json")
    assert not (tmp_path / "ids.safetensors").exists()


def test_bad_inputs_get_one_line(tmp_path):
    text = tmp_path / "t.txt"
    text.write_text("hello")
    empty = tmp_path / "empty"
    empty.mkdir()
    expect_error(run_pare(["tokenize", empty, "--text", text, "-o", tmp_path / "o.safetensors"]), 1, "has no tokenizer.json")
    expect_error(run_pare(["tokenize", FIXTURES / "gpt2-bytelevel", "--text", tmp_path / "missing.txt", "-o", tmp_path / "o.safetensors"]),
                 1, "missing.txt")
    lines = tmp_path / "bad.jsonl"
    lines.write_text('{"text": "one"}\n{"body": "two"}\n')
    expect_error(run_pare(["tokenize", FIXTURES / "gpt2-bytelevel", "--text", lines, "-o", tmp_path / "o.safetensors"]),
                 1, "line 2 has no string 'text'")
    broken = edit(tmp_path, "gpt2-bytelevel", lambda d: d["model"]["merges"].append(["q", "zzz-not-a-token"]))
    expect_error(run_pare(["tokenize", broken, "--text", text, "-o", tmp_path / "o.safetensors"]), 1, "zzz-not-a-token", "not in the vocabulary")
    proc = run_pare(["tokenize", FIXTURES / "gpt2-bytelevel", "--text", text, "-o", tmp_path / "o.safetensors", "--seed", "3"])
    assert proc.returncode == 64 and "--seed" in proc.stderr, describe(proc)
    proc = run_pare(["eval", TRAINED_LLAMA, "--text", text, "--tokens", text])
    assert proc.returncode == 64 and "either --tokens or --text" in proc.stderr, describe(proc)
    assert not (tmp_path / "o.safetensors").exists()
