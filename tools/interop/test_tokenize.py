"""`pare tokenize` (and `--text` on eval and calibrate) against the `tokenizers` library.

For every tokenizer kind in Tests/Fixtures/tokenizers/ (trained by
`tools/make_fixtures.py --only tokenizers`) and the real all-MiniLM-L6-v2 tokenizer, pare's
ids must equal `Tokenizer.from_file(...).encode(text).ids` (truncation and padding off)
byte for byte:
- case by case on a corpus made to break tokenizers (one JSON line per case, so a failure
  names the case);
- on raw bytes that are not UTF-8 (pare replaces them as Python's errors="replace" does);
- on 1 MB of English from CPython's `pydoc_data.topics`, as one document;
- on seeded random documents glued from pieces that each stress one rule;
- on every code point of planes 0-2 (and a sample of the rest) in a small context, also
  through made-up byte-level merges that make every pre-token cut visible in the ids, and
  through the normalizers no fixture has (the Unicode tables of `tokenizers` are of
  several older versions, see the sweep section);
- on fixtures edited into every other component form pare accepts (or pare refuses it);
- with added tokens of every flag, and added-token ids as the library assigns them.
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
    "curly contractions": "it\u2019s they\u2019LL we\u2019Re \u2019S \u2019t \u02bcs 's's''s",
    "starts with a special token": "<|endoftext|>Hi",
    "starts with <s>": "<s>Hi there",
    "starts with [CLS]": "[CLS]hi [SEP]",
    "starts with <|begin_of_text|>": "<|begin_of_text|> hi",
    "starts with <|im_start|>": "<|im_start|>system\nYou are",
    "special tokens between spaces": "<s> x </s>  y",
    "only a special token": "<|endoftext|>",
    "combining mark after a space": "a \u0301b \u0301\u0302 c\u0308",
    "other digits": "\u0663\u0664\u0665\u0666 \u0967\u0968 \uff11\uff12\uff13 \u00b2\u00b3 \u2460\u2461 \u216b 1\u00bd",
    "hangul jamo": "\u1100\u1161\u11a8 \u1112\u1161\u11ab\u1100\u1173\u11af",
    "compatibility characters": "\ufb01nance \u212bngstr\u00f6m \u210cilbert \u2126 \u00b5 \u1e9b\u0323 \uff21\uff22",
    "symbols": "price $5 \u20ac5 \u00a55 1+1=2 a^b ~x `y` a|b \u00a9\u00ae\u2122 \u00b0C",
    "cjk extensions": "\U00020000\U0002a6d6 \uf900\ufa6d \u3105\u3106 \u31f0 \u3400\u4db5 \U0002f800",
    "ascii separators": "a\x1cb\x1dc\x1ed\x1fe\x0bf\x0cg",
    "soft hyphen and bidi controls": "co\u00adop \u200eleft\u200f \u2066iso\u2069 \u061c",
    "variation selectors": "\u2764\ufe0f \u2764\ufe0e \u845b\U000e0100",
    "flag tag sequence": "\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F",
    "keycaps": "1\ufe0f\u20e3 #\ufe0f\u20e3",
    "spaces before newlines": "a   \n   b \t\n\t c \r\n\r\n d",
    "trailing spaces": "end   ",
    "tabs only": "\t\t",
    "carriage returns": "a\rb\r\rc",
    "private use": "\ue000\uf8ff\U000f0000",
    "greek final sigma": "\u039f\u0394\u03a5\u03a3\u03a3\u0395\u03a5\u03a3 \u03a3 \u03a3\u03b1",
    "dotted and dotless i": "I\u0307 \u0130 \u0131 i\u0307",
    "long digit run": "3" * 100,
    "long punctuation run": "!?" * 100 + "-" * 200,
    "long space run": " " * 500 + "x",
    "long cjk run": "\u65e5" * 300,
    "long emoji run": "\U0001F600" * 120,
    "long mixed": "ab\u00e9\u65e51 " * 200,
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
    assert summary["sequences"] == len(TORTURE) and summary["output"] == str(tmp_path / "ids.safetensors")
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


# Scripts that decompose, compose and reorder: accented Latin and loose combining marks,
# Hangul syllables and loose jamo (which NFC joins), Tibetan vowel signs, CJK, Greek with
# its accents, Devanagari with nukta, emoji, and compatibility forms (ligatures, squared
# and circled letters, full width). pare hands Foundation the text in stretches; these runs
# cross many stretch boundaries.
MIXED_RANGES = [(0xC0, 0x17F), (0x300, 0x36F), (0xAC00, 0xD7A3), (0x1100, 0x1112), (0x1161, 0x1175), (0x11A8, 0x11C2),
                (0x0F40, 0x0F84), (0x4E00, 0x9FA5), (0x391, 0x3C9), (0x915, 0x93C), (0x1F600, 0x1F64F),
                (0x1F00, 0x1FFE), (0xFB00, 0xFB4F), (0x3300, 0x3357), (0x2460, 0x24FF), (0x1F100, 0x1F1FF), (0xFF01, 0xFF9F)]


def mixed_text(size: int, seed: int) -> str:
    import random

    r = random.Random(seed)
    words, total = [], 0
    while total < size:
        ranges = r.sample(MIXED_RANGES, r.randint(1, 3))
        word = "".join(chr(r.randint(*r.choice(ranges))) for _ in range(r.randint(1, 400 if r.random() < 0.05 else 9)))
        words.append(word + r.choice([" ", " ", "", ", ", "\n"]))
        total += len(words[-1])
    return "".join(words)


@pytest.mark.parametrize("seed", [3, 4])
@pytest.mark.parametrize("name", [*KINDS, "NFD", "NFKC", "NFKD", "NFC", "StripAccents after NFD"])
def test_long_mixed_script_text_equals_tokenizers(name, seed, tmp_path):
    if name in KINDS:
        folder = FIXTURES / name
    else:
        kind, change = VARIANTS.get(name) or ("gpt2-bytelevel", _set("normalizer", {"type": name}))
        folder = edit(tmp_path, kind, change)
    text = mixed_text(150_000, seed)
    path = tmp_path / "mixed.txt"
    path.write_bytes(text.encode())
    tokenize(folder, path, tmp_path / "ids.safetensors")
    tok = reference(folder)
    want = tok.encode(text).ids
    got = rows(tmp_path / "ids.safetensors")[0]
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


# ---- Random documents ---------------------------------------------------------------
# Seeded documents glued from pieces that each stress one rule (contractions, folding,
# digits, every kind of space, marks, scripts, emoji, controls, special tokens), so that
# the rules meet in combinations nobody wrote by hand. Only assigned code points: the
# unassigned ones are the sweep's business below.
PIECES = (list("abcdeKkSsTtLlDdMmRrVvIi") + list("'\u2019\u02bc\"`") + list("0123456789")
          + ["\u0663", "\u06f4", "\u00b2", "\u00bd", "\u2460", "\uff11", "\u066b"]
          + [" ", "  ", "\t", "\n", "\r", "\r\n", "\x0b", "\x0c", "\x1c", "\u00a0", "\u3000", "\u2009", "\u2028", "\u2029",
             "\u0085", "\u200b", "\u180e", "\u1680", "\u202f", "\u205f", "\ufeff"]
          + ["\u00e9", "e\u0301", "\u0301", "\u0308", "\u00c5", "\u212b", "\u2126", "\u212a", "\u017f", "\ufb01", "\u01c5",
             "\u0130", "\u0131", "\u00df", "\u1e9e", "\u03a3", "\u03c2", "\u03c3", "\u0390", "\u1100\u1161\u11a8", "\ud55c"]
          + ["\u65e5", "\u672c", "\U00020000", "\uf900", "\u3042", "\u30a2", "\uff71", "\uac00", "\u0e01", "\u0e31", "\u092e",
             "\u094d", "\u0639", "\u064b", "\u05d0"]
          + ["\U0001F600", "\U0001F44D\U0001F3FD", "\u200d", "\U0001F1EB\U0001F1F7", "\ufe0f", "\U0001F9D1\u200d\U0001F4BB"]
          + list(".,!?-_$\u20ac\u00a5+=^~|<>@#%&*()[]{}\u00ab\u00bb\u2014\u2026\u00bf\u00b7\u00a7\u00a9\\/")
          + ["\x00", "\x01", "\x1b", "\x7f", "\x80", "\x9f", "\ufffd", "\ue000", "\U000f0000", "\u00ad", "\u0600", "\u061c"]
          + ["<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>", "<|im_start|>", "<|im_end|>", "<s>", "</s>", "<unk>",
             "[CLS]", "[SEP]", "[MASK]", "[PAD]", "[UNK]", "[cls]"]
          + ["the", " the", "The", "ing", "tion", " of", "def", "return", "Python", "\u2581", "\u2581the", "##"])


def random_documents(seed: int, count: int, longest: int = 40) -> list[str]:
    import random

    r = random.Random(seed)
    return ["".join(r.choice(PIECES) for _ in range(r.randint(0, longest))) for _ in range(count)]


def encode_lines(folder: Path, texts: list[str], tmp_path: Path, name: str = "docs") -> list[list[int]]:
    """pare's ids for each text, given as JSON lines."""
    corpus = tmp_path / f"{name}.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    out = tmp_path / f"{name}.safetensors"
    proc = run_pare(["tokenize", folder, "--text", corpus, "-o", out, "--force"], timeout=600)
    assert proc.returncode == 0, describe(proc)
    got = rows(out)
    assert len(got) == len(texts)
    return got


def mismatches(tok: Tokenizer, texts: list[str], got: list[list[int]], limit: int = 5) -> list[str]:
    bad = []
    for text, ids in zip(texts, got):
        want = tok.encode(text).ids
        if ids != want:
            bad.append(f"{text!r}: {first_difference(tok, ids, want)}")
    return bad[:limit] + ([f"... {len(bad)} of {len(texts)} documents differ"] if bad else [])


@pytest.mark.parametrize("folder", folders())
def test_random_documents_equal_tokenizers(folder, minilm, tmp_path):
    folder = resolve(folder, minilm)
    texts = random_documents(seed=2024, count=3000)
    bad = mismatches(reference(folder), texts, encode_lines(folder, texts, tmp_path))
    assert not bad, "\n".join(bad)


# ---- Every code point ---------------------------------------------------------------
# Character classes (letters, numbers, spaces, punctuation, marks, "other") and the
# normalization tables differ between Unicode versions, and `tokenizers` does not use one
# version throughout: its regexes are Oniguruma's, NFC/NFKC come from the
# unicode-normalization-alignments crate, and BertNormalizer / BertPreTokenizer /
# StripAccents ask the unicode_categories crate (whose "other" has no unassigned code
# points). So every code point of planes 0-2, and a sample of the others, is put in a
# small context and compared.

def swept_code_points() -> list[int]:
    low = [cp for cp in range(0x30000) if not 0xD800 <= cp <= 0xDFFF]
    return low + list(range(0x30000, 0x110000, 0x1000)) + [0xE0001, 0xE0020, 0xE007F, 0xE0100, 0xE01EF,
                                                            0xEFFFF, 0xFFFFD, 0x10FFFD, 0x10FFFF]


def describe_code_points(cps: list[int], limit: int = 40) -> str:
    import collections
    import unicodedata

    ranges: list[list[int]] = []
    for cp in cps:
        if ranges and ranges[-1][1] == cp - 1:
            ranges[-1][1] = cp
        else:
            ranges.append([cp, cp])
    shown = ", ".join(f"{a:04X}" + (f"-{b:04X}" if b != a else "") for a, b in ranges[:limit])
    categories = collections.Counter(unicodedata.category(chr(cp)) for cp in cps)
    return (f"{len(cps)} code points differ (general category by Python's Unicode {unicodedata.unidata_version}: "
            f"{dict(categories.most_common())}): {shown}{' ...' if len(ranges) > limit else ''}")


def sweep(folder: Path, tok: Tokenizer, probe, tmp_path: Path, block: int = 64) -> str | None:
    """Blocks of code points, each code point in `probe`; the blocks that differ are
    retried one code point per document. Returns a description of the differences."""
    cps = swept_code_points()
    blocks = [cps[k:k + block] for k in range(0, len(cps), block)]
    texts = ["".join(probe(chr(cp)) for cp in b) for b in blocks]
    got = encode_lines(folder, texts, tmp_path, "sweep")
    want = [e.ids for e in tok.encode_batch(texts)]
    suspects = [cp for b, g, w in zip(blocks, got, want) if g != w for cp in b]
    if not suspects:
        return None
    texts = [probe(chr(cp)) for cp in suspects]
    got = encode_lines(folder, texts, tmp_path, "suspects")
    bad = [(cp, text, g) for cp, text, g in zip(suspects, texts, got) if g != tok.encode(text).ids]
    if not bad:
        return "blocks differ but no code point alone does"
    cp, text, g = bad[0]
    return (describe_code_points([b[0] for b in bad])
            + f"\nfirst: U+{cp:04X} in {text!r}: {first_difference(tok, g, tok.encode(text).ids)}")


@pytest.mark.parametrize("folder", folders())
def test_every_code_point_equals_tokenizers(folder, minilm, tmp_path):
    folder = resolve(folder, minilm)
    problem = sweep(folder, reference(folder), lambda c: f"a{c}b {c}1 '{c} ", tmp_path)
    assert problem is None, problem


def byte_level_symbols() -> dict[int, str]:
    """GPT-2's byte -> printable character table."""
    visible = [*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = {b: chr(b) for b in visible}
    extra = 0
    for b in range(256):
        if b not in table:
            table[b] = chr(256 + extra)
            extra += 1
    return table


def boundary_tokenizer(kind: str, normalizer: dict | None = None) -> dict:
    """A fixture's tokenizer.json with a made-up byte-level BPE whose only merges join an
    anchor (`Q`, `7`, `!`, `'`, a space) with the next byte, and any byte with a following
    `Q`. The trained vocabularies hardly ever merge across the edge of a pre-token, so a
    pre-tokenizer that cuts elsewhere often gives the same ids; with these merges the ids
    show where every cut is."""
    sym = byte_level_symbols()
    vocab = {sym[b]: b for b in range(256)}
    merges = []

    def merge(a: str, b: str) -> None:
        if a + b not in vocab:
            vocab[a + b] = len(vocab)
            merges.append([a, b])

    for anchor in "Q7!' ":
        for b in range(256):
            merge(sym[ord(anchor)], sym[b])
    for b in range(256):
        merge(sym[b], sym[ord("Q")])
    data = json.loads((FIXTURES / kind / "tokenizer.json").read_text(encoding="utf-8"))
    data["model"].update(vocab=vocab, merges=merges)
    data["added_tokens"] = []
    data["post_processor"] = None
    if normalizer is not None:
        data["normalizer"] = normalizer
    return data


BOUNDARY_SWEEPS = {
    # pre-tokenizer classes: letters, numbers (and Llama 3's groups of three), the
    # "neither" class, (?i) contractions, spaces and line ends
    "gpt2-bytelevel": ("gpt2-bytelevel", None, lambda c: f"Q{c}Q 7{c}{c}{c}{c}7 !{c}! '{c}Q {c}{c}Q\n{c}\r\n{c}  "),
    "llama3-split": ("llama3-split", None, lambda c: f"Q{c}Q 7{c}{c}{c}{c}7 !{c}! '{c}Q {c}{c}Q\n{c}\r\n{c}  "),
    "qwen2-nfc": ("qwen2-nfc", None, lambda c: f"Q{c}Q 7{c}{c}{c}{c}7 !{c}! '{c}Q {c}{c}Q\n{c}\r\n{c}  "),
    # normalizers pare implements that no fixture has: their tables over every code point
    "NFD": ("gpt2-bytelevel", {"type": "NFD"}, lambda c: f"a{c} "),
    "NFKC": ("gpt2-bytelevel", {"type": "NFKC"}, lambda c: f"a{c} "),
    "NFKD": ("gpt2-bytelevel", {"type": "NFKD"}, lambda c: f"a{c} "),
    "Lowercase": ("gpt2-bytelevel", {"type": "Lowercase"}, lambda c: f"a{c} "),
    "NFD+StripAccents": ("gpt2-bytelevel", {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"}]},
                         lambda c: f"a{c} "),
}


@pytest.mark.parametrize("name", list(BOUNDARY_SWEEPS))
def test_every_code_point_is_cut_and_normalized_as_tokenizers_does(name, tmp_path):
    kind, normalizer, probe = BOUNDARY_SWEEPS[name]
    folder = tmp_path / name
    folder.mkdir()
    (folder / "tokenizer.json").write_text(json.dumps(boundary_tokenizer(kind, normalizer)), encoding="utf-8")
    problem = sweep(folder, reference(folder), probe, tmp_path)
    assert problem is None, problem


# ---- Components no fixture has ------------------------------------------------------
# Each variant edits one component of a fixture into another form pare accepts; pare must
# give tokenizers' ids on the torture corpus and random documents, or refuse the file.

def _set(field, value):
    return lambda d: d.update({field: value})


def _model(**fields):
    return lambda d: d["model"].update(fields)


def _byte_level(add_prefix_space=False, use_regex=False):
    return {"type": "ByteLevel", "add_prefix_space": add_prefix_space, "trim_offsets": True, "use_regex": use_regex}


def _then_byte_level(step):
    return _set("pre_tokenizer", {"type": "Sequence", "pretokenizers": [step, _byte_level()]})


def _split(pattern, behavior, invert=False, regex=True):
    return {"type": "Split", "pattern": {"Regex" if regex else "String": pattern}, "behavior": behavior, "invert": invert}


BEHAVIORS = ["Isolated", "Removed", "MergedWithPrevious", "MergedWithNext", "Contiguous"]
VARIANTS = {
    "NFD": ("gpt2-bytelevel", _set("normalizer", {"type": "NFD"})),
    "NFKC": ("gpt2-bytelevel", _set("normalizer", {"type": "NFKC"})),
    "NFKD": ("gpt2-bytelevel", _set("normalizer", {"type": "NFKD"})),
    "Lowercase": ("gpt2-bytelevel", _set("normalizer", {"type": "Lowercase"})),
    "StripAccents after NFD": ("gpt2-bytelevel", _set("normalizer", {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "StripAccents"}]})),
    "StripAccents alone": ("gpt2-bytelevel", _set("normalizer", {"type": "StripAccents"})),
    "Strip both sides": ("gpt2-bytelevel", _set("normalizer", {"type": "Strip", "strip_left": True, "strip_right": True})),
    "Strip left": ("gpt2-bytelevel", _set("normalizer", {"type": "Strip", "strip_left": True, "strip_right": False})),
    "Replace a regex": ("gpt2-bytelevel", _set("normalizer", {"type": "Replace", "pattern": {"Regex": r"\s{2,}"}, "content": " "})),
    "Replace by nothing": ("gpt2-bytelevel", _set("normalizer", {"type": "Replace", "pattern": {"String": "e"}, "content": ""})),
    "NFKC before Prepend": ("llama2-sentencepiece", lambda d: d["normalizer"]["normalizers"].insert(0, {"type": "NFKC"})),
    "BertNormalizer without clean_text": ("bert-wordpiece", lambda d: d["normalizer"].update(clean_text=False)),
    "BertNormalizer without Chinese spacing": ("bert-wordpiece", lambda d: d["normalizer"].update(handle_chinese_chars=False)),
    "BertNormalizer strip accents, cased": ("bert-cased", lambda d: d["normalizer"].update(strip_accents=True)),
    "BertNormalizer lowercase, accents kept": ("bert-wordpiece", lambda d: d["normalizer"].update(strip_accents=False)),
    "ByteLevel add_prefix_space": ("gpt2-bytelevel", _set("pre_tokenizer", _byte_level(True, True))),
    "ByteLevel without regex": ("gpt2-bytelevel", _set("pre_tokenizer", _byte_level(False, False))),
    "ByteLevel add_prefix_space without regex": ("gpt2-bytelevel", _set("pre_tokenizer", _byte_level(True, False))),
    "WhitespaceSplit": ("gpt2-bytelevel", _then_byte_level({"type": "WhitespaceSplit"})),
    "Digits one by one": ("gpt2-bytelevel", _then_byte_level({"type": "Digits", "individual_digits": True})),
    "Digits grouped": ("gpt2-bytelevel", _then_byte_level({"type": "Digits", "individual_digits": False})),
    **{f"Punctuation {b}": ("gpt2-bytelevel", _then_byte_level({"type": "Punctuation", "behavior": b})) for b in BEHAVIORS},
    **{f"Split string {b}": ("gpt2-bytelevel", _then_byte_level(_split(" ", b, regex=False))) for b in BEHAVIORS},
    **{f"Split regex {b}": ("gpt2-bytelevel", _then_byte_level(_split(r"\d|\s", b))) for b in BEHAVIORS},
    **{f"Split regex {b} inverted": ("gpt2-bytelevel", _then_byte_level(_split(r"\p{L}+", b, invert=True))) for b in BEHAVIORS},
    "Split regex matching empty": ("gpt2-bytelevel", _then_byte_level(_split("x*", "Isolated"))),
    "Metaspace always, split": ("mistral-metaspace", _set("pre_tokenizer", {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "always", "split": True})),
    "Metaspace first, split": ("mistral-metaspace", _set("pre_tokenizer", {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "first", "split": True})),
    "Metaspace never": ("mistral-metaspace", _set("pre_tokenizer", {"type": "Metaspace", "replacement": "\u2581", "prepend_scheme": "never", "split": False})),
    "Metaspace old add_prefix_space": ("mistral-metaspace", _set("pre_tokenizer", {"type": "Metaspace", "replacement": "\u2581", "add_prefix_space": True})),
    "BertPreTokenizer then Digits": ("bert-wordpiece", _set("pre_tokenizer", {"type": "Sequence", "pretokenizers": [{"type": "BertPreTokenizer"}, {"type": "Digits", "individual_digits": True}]})),
    "WordPiece after WhitespaceSplit": ("bert-wordpiece", _set("pre_tokenizer", {"type": "WhitespaceSplit"})),
    "BertProcessing": ("bert-wordpiece", _set("post_processor", {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]})),
    "RobertaProcessing": ("gpt2-bytelevel", _set("post_processor", {"type": "RobertaProcessing", "sep": ["<|endoftext|>", 0], "cls": ["<|endoftext|>", 0], "trim_offsets": True, "add_prefix_space": False})),
    "template with BOS and EOS": ("llama2-sentencepiece", lambda d: d["post_processor"].update(
        single=[{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}, {"SpecialToken": {"id": "</s>", "type_id": 0}}],
        special_tokens={"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}, "</s>": {"id": "</s>", "ids": [2], "tokens": ["</s>"]}})),
    "no post-processor": ("llama3-split", _set("post_processor", None)),
    "BPE ignore_merges (byte-level)": ("gpt2-bytelevel", _model(ignore_merges=True)),
    "BPE ignore_merges (byte fallback)": ("mistral-metaspace", _model(ignore_merges=True)),
    "BPE unknowns not fused": ("llama2-sentencepiece", _model(fuse_unk=False)),
    "BPE unknown token, no byte fallback": ("llama2-sentencepiece", _model(byte_fallback=False)),
    "BPE unknown token, no byte fallback, not fused": ("llama2-sentencepiece", _model(byte_fallback=False, fuse_unk=False)),
    "WordPiece with a short word limit": ("bert-wordpiece", _model(max_input_chars_per_word=6)),
}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_component_variants_equal_tokenizers_or_are_refused(name, tmp_path):
    kind, change = VARIANTS[name]
    folder = edit(tmp_path, kind, change)
    tok = reference(folder)  # tokenizers accepts the variant
    texts = list(TORTURE.values()) + random_documents(seed=len(name), count=600)
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    proc = run_pare(["tokenize", folder, "--text", corpus, "-o", tmp_path / "ids.safetensors"], timeout=300)
    if proc.returncode != 0:
        expect_error(proc, 1, "tokenizer.json")
        pytest.skip(f"pare refuses it: {proc.stderr.strip()}")
    bad = mismatches(tok, texts, rows(tmp_path / "ids.safetensors"))
    assert not bad, "\n".join(bad)


# ---- Added tokens -------------------------------------------------------------------
# Tokens added with each flag (lstrip, rstrip, single_word, normalized, special) through
# the library, which writes their ids; matched leftmost-longest in the raw text
# (normalized=false) or in each normalized piece (normalized=true).
ADDED = [
    ("<mask>", dict(lstrip=True, special=True, normalized=False)),
    ("<tool_call>", dict(special=False, normalized=False)),
    ("<tool", dict(special=False, normalized=False)),
    ("</tool_call>", dict(rstrip=True, special=False, normalized=False)),
    ("Hello World", dict(special=False, normalized=True)),
    ("caf\u00e9", dict(special=False, normalized=True)),
    ("word", dict(single_word=True, special=False, normalized=False)),
    ("[NL]", dict(lstrip=True, rstrip=True, single_word=True, special=True, normalized=False)),
]
ADDED_PIECES = ["<mask>", "<tool_call>", "<tool", "</tool_call>", "Hello World", "hello world", "HELLO WORLD", "caf\u00e9",
                "cafe\u0301", "CAF\u00c9", "word", "words", "sword", "Word", "_word", "word1", "[NL]", "x[NL]y", " ", "  ", "\t",
                "\n", "\u3000", "\u00a0", "a", "b", "the", "\u00e9", "!", "'s", "1", "\u65e5\u672c", "<s>", "[CLS]",
                "<|endoftext|>", "_", "\u2581", "-", "\u216b", "\u200d", "\u200c", "\u0345", "\u24b6", "\u0663", "\u00b2"]
ADDED_CASES = {
    "lstrip eats the spaces before": "a   <mask> b",
    "rstrip eats the spaces after": "x</tool_call>   \n y",
    "longest wins": "<tool_call><tool <tool_call",
    "single word alone": "a word here",
    "single word inside a word": "swordsman words word_ word1 1word",
    "normalized token in normalized text": "HELLO WORLD and Hello World and cafe\u0301",
    "all flags": "x [NL] y[NL]z  [NL]\n",
    "next to special tokens": "<s><mask></s>[CLS]word[SEP]",
    # Rust's `\w`: letter numbers, join controls and circled letters are word characters,
    # superscript digits are not.
    "single word beside letter numbers and joiners": "\u216bword word\u200d \u200cword \u24b6word word\u00b2 \u0663word",
}


def with_added_tokens(kind: str, tmp_path: Path, tokens=ADDED) -> Path:
    from tokenizers import AddedToken

    folder = tmp_path / f"added-{kind}"
    shutil.copytree(FIXTURES / kind, folder)
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    for content, flags in tokens:
        tok.add_tokens([AddedToken(content, **flags)])
    (folder / "tokenizer.json").write_text(tok.to_str(), encoding="utf-8")
    return folder


@pytest.mark.parametrize("kind", KINDS)
def test_added_token_flags_equal_tokenizers(kind, tmp_path):
    import random

    folder = with_added_tokens(kind, tmp_path)
    r = random.Random(7)
    texts = list(ADDED_CASES.values()) + ["".join(r.choice(ADDED_PIECES) for _ in range(r.randint(1, 12))) for _ in range(1500)]
    bad = mismatches(reference(folder), texts, encode_lines(folder, texts, tmp_path))
    assert not bad, "\n".join(bad)


def test_lstrip_into_a_swallowed_match_gives_no_token(tmp_path):
    """An rstrip token's spaces can swallow the next match whole; lstrip then leaves it
    empty, and `tokenizers` drops the empty split with its id."""
    folder = with_added_tokens("gpt2-bytelevel", tmp_path, [("<a>", dict(rstrip=True, special=True, normalized=False)),
                                                            ("\n", dict(lstrip=True, special=True, normalized=False))])
    # (a swallowed match that lstrip would push past its own stop makes the library panic)
    texts = ["<a>\n", "x<a>\nb", "<a>\ny <a>\n"]
    bad = mismatches(reference(folder), texts, encode_lines(folder, texts, tmp_path))
    assert not bad, "\n".join(bad)


def test_single_word_ignores_letters_newer_than_the_regex_tables(tmp_path):
    folder = with_added_tokens("gpt2-bytelevel", tmp_path, [("word", dict(single_word=True, special=False, normalized=False))])
    texts = ["\U00010940word", "word\U00011DB0", "\U000323B0word x"]
    bad = mismatches(reference(folder), texts, encode_lines(folder, texts, tmp_path))
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("form", ["NFD", "NFC", "NFKD", "NFKC"])
def test_marks_newer_than_the_combining_classes_are_not_reordered(form, tmp_path):
    """`tokenizers`' combining classes stop at Unicode 9.0: a 10.0 or 11.0 mark is a
    starter to them."""
    folder = edit(tmp_path, "gpt2-bytelevel", _set("normalizer", {"type": form}))
    texts = ["a\u0301\u1DF8", "e\u0301\u0D3B", "a\u0323\u1DF6\u0301", "o\u07FD\u0301", "\u1DF9\u0316x"]
    bad = mismatches(reference(folder), texts, encode_lines(folder, texts, tmp_path))
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("kind", ["gpt2-bytelevel", "bert-wordpiece"])
def test_rstrip_spaces_that_begin_the_next_added_token(kind, tmp_path):
    """`tokenizers` finds every added token in the text first and strips afterwards: an
    rstrip token's spaces may overlap the next token, which is still found."""
    folder = with_added_tokens(kind, tmp_path, [("<sep>", dict(rstrip=True, special=True, normalized=False)),
                                                (" <b>", dict(special=True, normalized=False))])
    texts = ["<sep>  <b>x", "<sep> <b>x", "x <b> <sep>  <b> <b>"]
    bad = mismatches(reference(folder), texts, encode_lines(folder, texts, tmp_path))
    assert not bad, "\n".join(bad)


def test_added_token_ids_are_the_librarys_not_the_files(tmp_path):
    """Loading tokenizer.json, `tokenizers` adds the added_tokens again in file order: one
    already in the model's vocabulary keeps that id, the others take the next free ids
    after the vocabulary, whatever ids the file writes. pare gives those ids."""
    def change(d):
        d["added_tokens"] += [
            dict(id=1600, content="<gap>", single_word=False, lstrip=False, rstrip=False, normalized=False, special=True),
            dict(id=1550, content="<gap2>", single_word=False, lstrip=False, rstrip=False, normalized=False, special=True),
            dict(id=5, content="<clash>", single_word=False, lstrip=False, rstrip=False, normalized=False, special=True),
        ]
    folder = edit(tmp_path, "gpt2-bytelevel", change)
    tok = reference(folder)
    assert [tok.token_to_id(t) for t in ("<gap>", "<gap2>", "<clash>")] == [1500, 1501, 1502]
    text = tmp_path / "t.jsonl"
    texts = ["a<gap>b<gap2><clash>", "<clash>"]
    text.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts), encoding="utf-8")
    proc = run_pare(["tokenize", folder, "--text", text, "-o", tmp_path / "ids.safetensors"])
    assert proc.returncode == 0, proc.stderr
    bad = mismatches(tok, texts, rows(tmp_path / "ids.safetensors"))
    assert not bad, "\n".join(bad)
