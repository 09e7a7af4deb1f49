"""Small tokenizers of every kind pare encodes, trained with the `tokenizers` package.

Called by ``tools/make_fixtures.py --only tokenizers``; writes
``Tests/Fixtures/tokenizers/<kind>/tokenizer.json`` (and ``tokenizer_config.json`` where the
family has one). Each tokenizer copies the structure of its family's real tokenizer.json
(the normalizer, pre-tokenizer, model flags and post-processor), with a vocabulary of a
couple of thousand tokens trained on the English text CPython ships
(``pydoc_data.topics``), so files stay small and nothing comes from the network.
Training is single-threaded and repeated: the two JSON documents must be identical.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# A few lines in other scripts, so that some non-Latin characters are in the vocabularies
# and others are not (those take byte fallback or [UNK]).
MIXED = [
    "Crème brûlée, naïve café, façade, Ångström, Øresund, Straße.",
    "日本語の文章です。東京は大きい。",
    "中文文本：北京，上海。",
    "مرحبا بالعالم",
    "नमस्ते दुनिया",
]


def training_text() -> list[str]:
    import pydoc_data.topics as topics

    lines: list[str] = []
    for key in sorted(topics.topics)[:120]:
        lines.extend(line for line in topics.topics[key].splitlines() if line.strip())
    return lines + MIXED * 3


def _train(tok: Tokenizer, trainer, lines: list[str]) -> Tokenizer:
    tok.train_from_iterator(lines, trainer=trainer)
    return tok


def gpt2_bytelevel(lines):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=1500, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    return _train(tok, trainer, lines), None


def _split_bytelevel(pattern: str, lines, specials, *, ignore_merges: bool, nfc: bool, bos: str | None):
    tok = Tokenizer(models.BPE(ignore_merges=ignore_merges))
    if nfc:
        tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(pattern), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=1800, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    _train(tok, trainer, lines)
    # As in the real files, the special tokens follow the trained vocabulary.
    tok.add_special_tokens(specials)
    if bos is None:
        # Qwen2's: a lone ByteLevel with every option off.
        tok.post_processor = processors.ByteLevel(add_prefix_space=False, trim_offsets=False, use_regex=False)
    else:
        # Llama 3's: ByteLevel with its defaults, then the BOS template.
        tok.post_processor = processors.Sequence([
            processors.ByteLevel(trim_offsets=False),
            processors.TemplateProcessing(single=f"{bos} $A", pair=f"{bos} $A {bos} $B",
                                          special_tokens=[(bos, tok.token_to_id(bos))]),
        ])
    return tok


def llama3_split(lines):
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|reserved_special_token_0|>", "<|eot_id|>"]
    tok = _split_bytelevel(LLAMA3_PATTERN, lines, specials, ignore_merges=True, nfc=False, bos="<|begin_of_text|>")
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
              "model_max_length": 131072}
    return tok, config


def qwen2_nfc(lines):
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = _split_bytelevel(QWEN2_PATTERN, lines, specials, ignore_merges=False, nfc=True, bos=None)
    config = {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": None, "eos_token": "<|im_end|>",
              "pad_token": "<|endoftext|>", "model_max_length": 32768}
    return tok, config


def _sentencepiece_vocab(lines) -> dict:
    """A Llama 2 style BPE: pieces trained with the Metaspace convention, then the
    vocabulary laid out as SentencePiece's is: <unk>, <s>, </s>, the 256 byte tokens, then
    the pieces. Only Latin letters and punctuation are allowed into the alphabet, so other
    scripts take the byte fallback."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always", split=True)
    trainer = trainers.BpeTrainer(vocab_size=1600, limit_alphabet=90, show_progress=False)
    _train(tok, trainer, lines)
    trained = json.loads(tok.to_str())["model"]
    vocab: dict[str, int] = {"<unk>": 0, "<s>": 1, "</s>": 2}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for piece, _ in sorted(trained["vocab"].items(), key=lambda kv: kv[1]):
        vocab.setdefault(piece, len(vocab))
    return {"vocab": vocab, "merges": trained["merges"]}


def _sentencepiece(lines, *, legacy: bool):
    trained = _sentencepiece_vocab(lines)
    tok = Tokenizer(models.BPE(vocab=trained["vocab"], merges=[tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in trained["merges"]],
                               unk_token="<unk>", byte_fallback=True, fuse_unk=True))
    tok.add_special_tokens(["<unk>", "<s>", "</s>"])
    if legacy:
        tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
        tok.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)])
    else:
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first", split=False)
        tok.decoder = decoders.Sequence([decoders.Metaspace(replacement="▁", prepend_scheme="first", split=False),
                                         decoders.ByteFallback(), decoders.Fuse()])
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    config = {"tokenizer_class": "LlamaTokenizer" if legacy else "PreTrainedTokenizerFast", "add_bos_token": True,
              "add_eos_token": False, "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>", "legacy": legacy,
              "model_max_length": 4096}
    return tok, config


def llama2_sentencepiece(lines):
    return _sentencepiece(lines, legacy=True)


def mistral_metaspace(lines):
    return _sentencepiece(lines, legacy=False)


def _wordpiece(lines, *, lowercase: bool):
    normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                            strip_accents=None if lowercase else False, lowercase=lowercase)
    # WordPieceTrainer (and BPE with a `##` prefix) break ties in hash order, differently
    # from run to run. A plain BPE is deterministic: its pieces, each also as a `##`
    # continuation, make the WordPiece vocabulary.
    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizer
    bpe.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    _train(bpe, trainers.BpeTrainer(vocab_size=1000, show_progress=False), lines)
    vocab = {t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])}
    pieces = [piece for piece, _ in sorted(bpe.get_vocab().items(), key=lambda kv: kv[1])]
    for piece in pieces:
        vocab.setdefault(piece, len(vocab))
    for piece in pieces:
        vocab.setdefault("##" + piece, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    tok.normalizer = normalizer
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix="##")
    cls, sep = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    tok.post_processor = processors.TemplateProcessing(single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
                                                       special_tokens=[("[CLS]", cls), ("[SEP]", sep)])
    config = {"tokenizer_class": "BertTokenizer", "do_lower_case": lowercase, "unk_token": "[UNK]", "sep_token": "[SEP]",
              "pad_token": "[PAD]", "cls_token": "[CLS]", "mask_token": "[MASK]", "model_max_length": 512}
    return tok, config


def bert_wordpiece(lines):
    return _wordpiece(lines, lowercase=True)


def bert_cased(lines):
    return _wordpiece(lines, lowercase=False)


KINDS = {
    "gpt2-bytelevel": (gpt2_bytelevel, "GPT-2: the ByteLevel pre-tokenizer with GPT-2's own pattern, `<|endoftext|>`."),
    "llama3-split": (llama3_split, "Llama 3: a Split with Llama 3's pattern, then ByteLevel; `ignore_merges`; BOS by template; specials after the vocabulary."),
    "qwen2-nfc": (qwen2_nfc, "Qwen2/3: NFC, a Split with Qwen2's pattern (single digits), then ByteLevel; no BOS."),
    "llama2-sentencepiece": (llama2_sentencepiece, "Llama 2 (legacy layout): Prepend and Replace normalizers, no pre-tokenizer, BPE with byte fallback and fused unknowns, `<s>` by template."),
    "mistral-metaspace": (mistral_metaspace, "Mistral/Mixtral (newer layout): the Metaspace pre-tokenizer with `prepend_scheme: first`, the same BPE."),
    "bert-wordpiece": (bert_wordpiece, "BERT uncased: BertNormalizer (lowercase, strip accents, CJK spacing), BertPreTokenizer, WordPiece, `[CLS] $A [SEP]`."),
    "bert-cased": (bert_cased, "BERT cased: BertNormalizer without lowercasing or accent stripping."),
}


def build(out: Path) -> list[str]:
    """Writes every kind under `out` (Tests/Fixtures/tokenizers); returns the kinds built."""
    lines = training_text()
    built = []
    readme = ["# Tokenizer fixtures", "",
              "Small tokenizers of each kind pare encodes, trained by `tools/make_fixtures.py --only tokenizers`",
              "(`tools/tokenizer_fixtures.py`) with the `tokenizers` package on CPython's `pydoc_data.topics`.",
              "Each copies its family's tokenizer.json structure; the vocabularies are small. Used by",
              "`tools/interop/test_tokenize.py`, which compares pare's ids with the library's.", ""]
    for name, (maker, what) in KINDS.items():
        tok, config = maker(lines)
        text = tok.to_str(pretty=True)
        again, _ = maker(lines)
        assert again.to_str(pretty=True) == text, f"{name}: training is not deterministic"
        Tokenizer.from_str(text)  # loads back
        folder = out / name
        folder.mkdir(parents=True, exist_ok=True)
        for stale in folder.iterdir():
            stale.unlink()
        (folder / "tokenizer.json").write_text(text + "\n", encoding="utf-8")
        if config is not None:
            (folder / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
        readme.append(f"- `{name}`: {what}")
        built.append(name)
    (out / "README.md").write_text("\n".join(readme) + "\n", encoding="utf-8")
    return built
