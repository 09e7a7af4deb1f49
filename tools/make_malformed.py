#!/usr/bin/env python3
"""Write a corpus of malformed (and a few tricky but valid) `.safetensors` files.

    make_malformed.py OUTDIR

Every file is assembled byte by byte: headers are JSON text built with string
formatting, so a file can hold things `json.dumps` never writes (duplicate keys,
`-0`, lone surrogate escapes, invalid UTF-8, NUL padding, lying header lengths).

OUTDIR/manifest.json describes the corpus:

    {
      "version": 1,
      "rules": [<every rule id, in pare's checking order>],
      "malformed": {"<file>": {"rule": "<rule id>", "reference_accepts": false, "what": "..."}},
      "ambiguous": {"<file>": {"rules": ["<id>", ...], "reference_accepts": false, "what": "..."}},
      "valid":     {"<file>": {"what": "..."}}
    }

* `malformed`: each file breaks exactly one rule; `rule` is the id pare must name
  (`pare: error: <file>: ... [rule: <id>]`). `reference_accepts` says whether
  Python `safetensors` (0.8.0) opens the file anyway (e.g. duplicate names: serde
  keeps the last one).
* `ambiguous`: files that must be rejected, but where more than one rule id is a
  defensible answer (a dimension that does not fit in 64 bits, ...). Any id in
  `rules` is accepted.
* `valid`: edge cases the reference accepts; pare must accept them too.

Before writing, every file is run through `classify()`, a small pure-Python model
of pare's validation order, and the corpus is refused if a file does not produce
its expected rule, or if a file breaks more than one rule at the stage where it
fails (so the expected rule does not depend on checking order within a stage).
"""

from __future__ import annotations

import argparse
import json
import struct
import sys
from dataclasses import dataclass, field
from pathlib import Path

MAX_HEADER = 100_000_000
U64 = 1 << 64

RULES = [
    "file-too-small",
    "header-too-large",
    "header-out-of-bounds",
    "header-utf8",
    "header-json",
    "header-structure",
    "unknown-dtype",
    "metadata-not-string-map",
    "duplicate-tensor",
    "offsets-contiguous",
    "shape-overflow",
    "span-mismatch",
    "data-size",
]

# dtype -> size in bits, as pare accepts them
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8, "I16": 16, "U16": 16, "I32": 32, "U32": 32,
    "I64": 64, "U64": 64, "F16": 16, "BF16": 16, "F32": 32, "F64": 64, "C64": 64,
    "F8_E4M3": 8, "F8_E5M2": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}


# --------------------------------------------------------------------------- byte builders


class Raw(str):
    """JSON text inserted verbatim."""


def js(v) -> str:
    """JSON text for a value: Raw verbatim, str quoted (no escaping: we control
    the content), ints, floats (repr), lists recursively."""
    if isinstance(v, Raw):
        return str(v)
    if isinstance(v, str):
        return '"' + v + '"'
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(js(x) for x in v) + "]"
    if v is None:
        return "null"
    raise TypeError(v)


def ent(dtype, shape, offsets) -> Raw:
    """A tensor entry; each part may be a Raw to break it."""
    return Raw('{"dtype":%s,"shape":%s,"data_offsets":%s}' % (js(dtype), js(shape), js(offsets)))


def obj(*pairs) -> Raw:
    """A JSON object from (key, value) pairs, in order, duplicates kept.
    Keys are inserted between quotes verbatim (so they may hold escapes)."""
    return Raw("{" + ",".join('"%s":%s' % (k, js(v)) for k, v in pairs) + "}")


def payload(n: int) -> bytes:
    return bytes((i * 37 + 11) & 0xFF for i in range(n))


def st(header, data: bytes | int = b"", *, n: int | None = None, pad: bool = True) -> bytes:
    """A file: 8-byte little-endian header length, header, data.

    header: str (UTF-8 encoded) or bytes. pad: right-pad the header with spaces to a
    multiple of 8, as writers do. n: the declared header length (default: the real one).
    data: bytes, or a byte count for a deterministic payload."""
    h = header.encode("utf-8") if isinstance(header, str) else bytes(header)
    if pad:
        h += b" " * (-len(h) % 8)
    if isinstance(data, int):
        data = payload(data)
    return struct.pack("<Q", len(h) if n is None else n) + h + data


# --------------------------------------------------------------------------- the corpus


@dataclass
class Case:
    name: str
    blob: bytes
    what: str
    rule: str | None = None  # malformed
    rules: list[str] = field(default_factory=list)  # ambiguous
    reference_accepts: bool = False
    section: str = "malformed"


def cases() -> list[Case]:
    out: list[Case] = []

    def bad(name, rule, blob, what, reference_accepts=False):
        out.append(Case(name + ".safetensors", blob, what, rule=rule, reference_accepts=reference_accepts))

    def amb(name, rules, blob, what, reference_accepts=False):
        out.append(Case(name + ".safetensors", blob, what, rules=list(rules),
                        reference_accepts=reference_accepts, section="ambiguous"))

    def ok(name, blob, what):
        out.append(Case(name + ".safetensors", blob, what, section="valid"))

    one_f32 = st(obj(("w", ent("F32", [2], [0, 8]))), 8)

    # ---- file-too-small
    bad("too_small_empty", "file-too-small", b"", "empty file (0 bytes)")
    bad("too_small_4_bytes", "file-too-small", struct.pack("<I", 2),
        "4 bytes: a 32-bit header length and nothing else")
    bad("too_small_7_byte_prefix", "file-too-small", one_f32[:7],
        "the first 7 bytes of a valid file")

    # ---- header-too-large (the file is small, so the header is also out of bounds:
    # unavoidable, and header-too-large is checked first)
    empty8 = b"{}" + b" " * 6
    bad("too_large_1e8_plus_1", "header-too-large", st(empty8, n=MAX_HEADER + 1, pad=False),
        "declared header length 100,000,001 (one past the cap)")
    bad("too_large_u64_max", "header-too-large", st(empty8, n=U64 - 1, pad=False),
        "declared header length 2^64-1")
    bad("too_large_2pow32_plus_8", "header-too-large", st(empty8, n=(1 << 32) + 8, pad=False),
        "declared header length 2^32+8: truncated to 32 bits it would be a valid 8-byte '{}' header")

    # ---- header-out-of-bounds
    bad("oob_exactly_1e8", "header-out-of-bounds", st(empty8, n=MAX_HEADER, pad=False),
        "declared header length exactly 100,000,000 (allowed size) in a 16-byte file")
    bad("oob_off_by_one", "header-out-of-bounds", st(empty8, n=9, pad=False),
        "declared header length one byte longer than the rest of the file")
    bad("oob_header_cut_short", "header-out-of-bounds", one_f32[: 8 + (len(one_f32) - 16) // 2],
        "a valid file truncated in the middle of its header")

    # ---- header-utf8 (otherwise well-formed headers)
    bad("utf8_latin1_metadata", "header-utf8",
        st(b'{"__metadata__":{"author":"Ren\xe9"},"w":' + ent("U8", [4], [0, 4]).encode() + b"}", 4),
        "Latin-1 byte 0xE9 in a metadata value")
    bad("utf8_overlong", "header-utf8",
        st(b'{"a\xc0\xafb":' + ent("U8", [4], [0, 4]).encode() + b"}", 4),
        "overlong encoding C0 AF ('/') in a tensor name")
    bad("utf8_encoded_surrogate", "header-utf8",
        st(b'{"\xed\xa0\x80":' + ent("U8", [4], [0, 4]).encode() + b"}", 4),
        "UTF-8-encoded surrogate U+D800 (ED A0 80) in a tensor name")
    bad("utf8_truncated_sequence", "header-utf8",
        st(b'{"cost\xe2\x82":' + ent("U8", [4], [0, 4]).encode() + b"}", 4),
        "a 3-byte sequence cut after 2 bytes (E2 82) in a tensor name")

    # ---- header-json
    bad("json_empty_header", "header-json", st(b"", pad=False), "header length 0: empty header")
    bad("json_truncated", "header-json", st('{"w":{"dtype":"F32","shape":[2],'),
        "JSON text cut off in the middle (declared length matches)")
    bad("json_list", "header-json", st("[]"), "header is the JSON array []")
    bad("json_string", "header-json", st('"x"'), 'header is the JSON string "x"')
    bad("json_number", "header-json", st("1"), "header is the JSON number 1")
    bad("json_trailing_garbage", "header-json", st("{} x"), "a valid object followed by 'x'")
    bad("json_nul_padding", "header-json", st(b"{}" + b"\x00" * 6, pad=False),
        "header padded with NUL bytes instead of spaces")
    bad("json_bom", "header-json", st(b"\xef\xbb\xbf{}"), "UTF-8 byte order mark before '{'")
    bad("json_lone_surrogate_escape", "header-json",
        st(obj(("\\ud800", ent("U8", [4], [0, 4]))), 4),
        "tensor name is the escape \\ud800, a lone surrogate (not a Unicode string)")
    bad("json_nan_literal", "header-json", st(obj(("__metadata__", Raw('{"a":NaN}')))),
        "NaN literal (not JSON) as a metadata value")
    bad("json_raw_control_char", "header-json",
        st(b'{"a\nb":' + ent("U8", [4], [0, 4]).encode() + b"}", 4),
        "unescaped newline inside a tensor name")
    bad("json_leading_zero", "header-json", st(obj(("w", ent("U8", Raw("[04]"), [0, 4]))), 4),
        "number with a leading zero (04) in a shape")
    bad("json_invalid_escape", "header-json", st(obj(("\\x41", ent("U8", [4], [0, 4]))), 4),
        "invalid escape \\x41 in a tensor name")
    depth = 100_000
    bad("json_deep_nesting", "header-json", st("[" * depth + "]" * depth),
        f"header is an array nested {depth} deep (not an object; a recursive parser may overflow its stack)")

    # ---- header-structure
    bad("struct_entry_number", "header-structure", st(obj(("w", 1))),
        "tensor entry is the number 1, not an object")
    bad("struct_missing_dtype", "header-structure",
        st(obj(("w", Raw('{"shape":[4],"data_offsets":[0,4]}'))), 4), "tensor entry without dtype")
    bad("struct_missing_shape", "header-structure",
        st(obj(("w", Raw('{"dtype":"U8","data_offsets":[0,4]}'))), 4), "tensor entry without shape")
    bad("struct_missing_offsets", "header-structure",
        st(obj(("w", Raw('{"dtype":"U8","shape":[0]}')))), "tensor entry without data_offsets")
    bad("struct_dtype_not_string", "header-structure",
        st(obj(("w", ent(Raw("4"), [4], [0, 4]))), 4), "dtype is the number 4")
    bad("struct_shape_negative", "header-structure",
        st(obj(("w", ent("U8", [-4], [0, 0])))), "shape [-4]")
    bad("struct_shape_float", "header-structure",
        st(obj(("w", ent("F32", Raw("[2.0]"), [0, 8]))), 8), "shape [2.0] (a float)")
    bad("struct_shape_negative_zero", "header-structure",
        st(obj(("w", ent("U8", Raw("[-0]"), [0, 0])))),
        "shape [-0] (serde reads -0 as a float; not a non-negative integer)")
    bad("struct_shape_not_array", "header-structure",
        st(obj(("w", ent("U8", Raw("4"), [0, 4]))), 4), "shape is the number 4, not an array")
    bad("struct_offsets_three", "header-structure",
        st(obj(("w", ent("U8", [4], [0, 4, 4]))), 4), "data_offsets has 3 elements")
    bad("struct_offsets_strings", "header-structure",
        st(obj(("w", ent("U8", [4], Raw('["0","4"]')))), 4), 'data_offsets ["0","4"]')
    bad("struct_offsets_negative", "header-structure",
        st(obj(("w", ent("U8", [4], [-4, 0])))), "data_offsets [-4,0]")

    # ---- unknown-dtype
    for label, dt in [("F128", "F128"), ("float32", "float32"), ("empty", ""), ("lowercase_f32", "f32"),
                      ("torch_name_F8_E4M3FN", "F8_E4M3FN")]:
        bad(f"dtype_{label}", "unknown-dtype", st(obj(("w", ent(dt, [1], [0, 4]))), 4),
            f'dtype "{dt}"')

    # ---- metadata-not-string-map
    w4 = ("w", ent("U8", [4], [0, 4]))
    bad("meta_string", "metadata-not-string-map", st(obj(("__metadata__", "pt"), w4), 4),
        '__metadata__ is the string "pt"')
    bad("meta_list", "metadata-not-string-map",
        st(obj(("__metadata__", ["format", "pt"]), w4), 4), "__metadata__ is an array")
    bad("meta_int_value", "metadata-not-string-map",
        st(obj(("__metadata__", Raw('{"format":"pt","step":1000}')), w4), 4),
        "__metadata__ value is the number 1000")
    bad("meta_nested_value", "metadata-not-string-map",
        st(obj(("__metadata__", Raw('{"config":{"a":"b"}}')), w4), 4),
        "__metadata__ value is an object")
    bad("meta_is_tensor_entry", "metadata-not-string-map",
        st(obj(("__metadata__", ent("U8", [0], [0, 0])))),
        "__metadata__ holds a tensor entry: it is not a tensor, and its values are not strings")
    ok("valid_meta_null", st(obj(("__metadata__", None), w4), 4),
       "__metadata__ is null: the reference reads a null Option as no metadata, and so does pare")

    # ---- duplicate-tensor
    bad("dup_zero_size", "duplicate-tensor",
        st(obj(("z", ent("U8", [0], [0, 0])), ("z", ent("U8", [0], [0, 0])))),
        "the same zero-size entry twice (no offsets conflict either way)", reference_accepts=True)
    bad("dup_identical", "duplicate-tensor",
        st(obj(("w", ent("F32", [1], [0, 4])), ("w", ent("F32", [1], [0, 4]))), 4),
        "the same entry twice", reference_accepts=True)
    bad("dup_same_span_other_shape", "duplicate-tensor",
        st(obj(("w", ent("U8", [4], [0, 4])), ("w", ent("U8", [2, 2], [0, 4]))), 4),
        "same name, same span, shapes [4] then [2,2] (serde silently keeps [2,2])",
        reference_accepts=True)
    bad("dup_distinct_spans", "duplicate-tensor",
        st(obj(("w", ent("U8", [4], [0, 4])), ("w", ent("U8", [4], [4, 8]))), 8),
        "same name on two contiguous spans (serde keeps the last, then fails its offsets check)")
    bad("dup_escaped_name", "duplicate-tensor",
        st(obj(("w", ent("U8", [0], [0, 0])), ("\\u0077", ent("U8", [0], [0, 0])))),
        'names "w" and "\\u0077" are the same string after unescaping', reference_accepts=True)

    # ---- offsets-contiguous
    bad("offs_gap", "offsets-contiguous",
        st(obj(("a", ent("U8", [4], [0, 4])), ("b", ent("U8", [4], [8, 12]))), 12),
        "4-byte gap between two tensors")
    bad("offs_overlap", "offsets-contiguous",
        st(obj(("a", ent("U8", [4], [0, 4])), ("b", ent("U8", [4], [2, 6]))), 6),
        "two tensors overlap by 2 bytes")
    bad("offs_same_span", "offsets-contiguous",
        st(obj(("a", ent("U8", [4], [0, 4])), ("b", ent("U8", [4], [0, 4]))), 4),
        "two names share one span")
    bad("offs_not_from_zero", "offsets-contiguous",
        st(obj(("a", ent("U8", [4], [4, 8]))), 8), "the only tensor starts at 4, not 0")
    bad("offs_end_before_start", "offsets-contiguous",
        st(obj(("a", ent("U8", [4], [0, 4])), ("b", ent("U8", [0], [4, 0])), ("c", ent("U8", [4], [4, 8]))), 8),
        "a zero-size tensor with data_offsets [4,0] (end < start)")
    bad("offs_zero_size_misplaced", "offsets-contiguous",
        st(obj(("a", ent("U8", [4], [0, 4])), ("z", ent("F32", [0], [8, 8]))), 8),
        "a zero-size tensor placed at 8 while the previous span ends at 4")

    # ---- shape-overflow
    bad("ovf_elements", "shape-overflow",
        st(obj(("w", ent("U8", [1 << 32, 1 << 32, 16], [0, 4]))), 4),
        "shape [2^32, 2^32, 16]: 2^68 elements")
    bad("ovf_elements_wrap_to_zero", "shape-overflow",
        st(obj(("w", ent("U8", [1 << 32, 1 << 32], [0, 0])))),
        "shape [2^32, 2^32] with span 0: the element count wraps to exactly 0 in 64 bits")
    bad("ovf_bytes_wrap_to_zero", "shape-overflow",
        st(obj(("w", ent("F32", [1 << 62], [0, 0])))),
        "F32 shape [2^62] with span 0: 2^62 elements fit, 2^64 bytes wrap to 0")
    bad("ovf_trailing_zero_dim", "shape-overflow",
        st(obj(("w", ent("U8", [1 << 32, 1 << 32, 16, 0], [0, 0])))),
        "shape [2^32, 2^32, 16, 0]: 0 elements, but the running product overflows before the 0 "
        "(the reference multiplies left to right with checked arithmetic and rejects it)")

    # ---- span-mismatch
    bad("span_f32_short", "span-mismatch", st(obj(("w", ent("F32", [2], [0, 4]))), 4),
        "F32 [2] (8 bytes) on a 4-byte span")
    bad("span_c64_is_8_bytes", "span-mismatch", st(obj(("w", ent("C64", [1], [0, 16]))), 16),
        "C64 [1] on a 16-byte span (C64 is 8 bytes: two f32)")
    bad("span_f4_odd_ceil", "span-mismatch", st(obj(("w", ent("F4", [3], [0, 2]))), 2),
        "F4 [3] = 12 bits on a 2-byte span (not a whole number of bytes)")
    bad("span_f4_odd_floor", "span-mismatch", st(obj(("w", ent("F4", [3], [0, 1]))), 1),
        "F4 [3] = 12 bits on a 1-byte span (not a whole number of bytes)")
    bad("span_f6_odd", "span-mismatch", st(obj(("w", ent("F6_E3M2", [3], [0, 3]))), 3),
        "F6_E3M2 [3] = 18 bits on a 3-byte span (not a whole number of bytes)")
    bad("span_scalar_empty", "span-mismatch", st(obj(("w", ent("F32", [], [0, 0])))),
        "F32 scalar (shape [], one element) on an empty span")
    bad("span_second_tensor", "span-mismatch",
        st(obj(("a", ent("F32", [1], [0, 4])), ("b", ent("F16", [3], [4, 12]))), 12),
        "second tensor F16 [3] (6 bytes) on an 8-byte span")

    # ---- data-size
    bad("size_trailing_after_empty_header", "data-size", st("{}", 4),
        "no tensors, 4 data bytes")
    bad("size_trailing_byte", "data-size", st(obj(("w", ent("F32", [1], [0, 4]))), 5),
        "one byte after the last tensor")
    bad("size_past_eof", "data-size", st(obj(("w", ent("U8", [8], [0, 8]))), 4),
        "tensor span ends 4 bytes past the end of the file")
    bad("size_huge_past_eof", "data-size",
        st(obj(("w", ent("U8", [1 << 40], [0, 1 << 40])))),
        "1 TiB tensor span in a file with no data bytes")

    # ---- ambiguous: must be rejected, several rule ids defensible
    amb("amb_dim_2pow64", ["header-structure", "shape-overflow"],
        st(obj(("w", ent("U8", [1 << 64], [0, 4]))), 4),
        "shape [2^64]: an integer that does not fit in 64 bits (serde: not a usize)")
    amb("amb_u8_dim_u64max", ["shape-overflow", "span-mismatch"],
        st(obj(("w", ent("U8", [U64 - 1], [0, 4]))), 4),
        "U8 shape [2^64-1]: bytes fit in 64 bits, bits do not; the reference reports an overflow "
        "(it counts bits), a byte-counting reader reports a span mismatch")
    amb("amb_duplicate_metadata", ["duplicate-tensor", "metadata-not-string-map", "header-json",
                                   "header-structure"],
        st(obj(("__metadata__", Raw('{"format":"pt"}')), ("__metadata__", Raw('{"format":"np"}')))),
        "__metadata__ twice (serde: duplicate field)")
    amb("amb_duplicate_field", ["header-structure", "header-json"],
        st(obj(("w", Raw('{"dtype":"U8","dtype":"U8","shape":[4],"data_offsets":[0,4]}'))), 4),
        "dtype twice inside one tensor entry (serde: duplicate field)")
    amb("amb_deep_nesting_entry", ["header-json", "header-structure"],
        st('{"w":' + '{"a":' * depth + "{}" + "}" * depth + "}"),
        f"a tensor entry made of objects nested {depth} deep (serde: recursion limit)")

    amb("amb_span_2pow63", ["shape-overflow", "data-size"],
        st(obj(("w", ent("U8", [1 << 63], [0, 1 << 63])))),
        "U8 [2^63] on span [0, 2^63] in a file with no data: fits in UInt64, not in Int64; "
        "the reference reports an overflow (bits), a byte-counting reader a data-size error")
    amb("amb_offsets_u64_max", ["offsets-contiguous", "data-size"],
        st(obj(("z", ent("U8", [0], [U64 - 1, U64 - 1])))),
        "zero-size tensor at offset 2^64-1 (not from 0, and past the end; offsets do not fit in Int64)")

    # ---- valid edge cases
    ok("valid_empty_padded", st("{}"), "empty header {} padded with spaces to 8 bytes")
    ok("valid_empty_unpadded", st("{}", pad=False), "empty header {} of length 2, no padding")
    ok("valid_zero_element", st(obj(("w", ent("F32", [0], [0, 0])))), "F32 shape [0], offsets [0,0]")
    ok("valid_scalar", st(obj(("w", ent("F32", [], [0, 4]))), 4), "F32 scalar, shape []")
    ok("valid_out_of_order",
       st(obj(("c", ent("F16", [2], [12, 16])), ("a", ent("F32", [2], [0, 8])), ("b", ent("I32", [1], [8, 12]))), 16),
       "tensors listed in the header in reverse offset order")
    ok("valid_zero_size_ties",
       st(obj(("big", ent("U8", [4], [0, 4])), ("empty_first", ent("F32", [0], [0, 0])),
              ("empty_last", ent("BF16", [2, 0], [4, 4]))), 4),
       "zero-size tensors sharing a start offset with a real one, listed after it "
       "(the reference sorts by (start, end))")
    dt_pairs, off = [], 0
    for dt, bits in sorted(DTYPE_BITS.items()):
        size = 4 * bits // 8  # shape [2,2]
        dt_pairs.append((f"t_{dt.lower()}", ent(dt, [2, 2], [off, off + size])))
        off += size
    ok("valid_all_dtypes", st(obj(*dt_pairs), off), "one [2,2] tensor of each of the 22 dtypes")
    ok("valid_unicode_and_metadata",
       st(obj(("__metadata__", Raw('{"format":"pt","note":"caf\\u00e9 \u2713","empty":""}')),
              ("r\u00e9sum\u00e9.weight", ent("F16", [2], [0, 4])),
              ("\\u00e9t\\u00e9\\t.bias", ent("F16", [1], [4, 6])),
              ("", ent("U8", [2], [6, 8]))), 8),
       "metadata, raw UTF-8 and escaped names (\\u00e9, \\t), an empty tensor name")
    ok("valid_zero_dim_first",
       st(obj(("w", ent("U8", [0, 1 << 32, 1 << 32, 16], [0, 0])))),
       "shape [0, 2^32, 2^32, 16]: 0 elements; left-to-right checked product never overflows "
       "(the reference accepts it)")
    return out


# --------------------------------------------------------------------------- a model of pare's rules


class _NegZero:
    """Stands for the JSON integer literal -0 (serde reads it as a float)."""


class _Obj(list):
    """A JSON object as its (key, value) pairs, duplicates kept."""


class _JSONError(Exception):
    pass


def _loads(text: str):
    def bad_constant(s):
        raise _JSONError(s)

    try:
        v = json.loads(
            text,
            object_pairs_hook=_Obj,
            parse_int=lambda s: _NegZero() if s == "-0" else int(s),
            parse_constant=bad_constant,
        )
    except (ValueError, RecursionError, _JSONError) as e:
        raise _JSONError(str(e)) from None

    def check_strings(x):  # lone surrogates from \ud800-style escapes are not strings
        stack = [x]
        while stack:
            y = stack.pop()
            if isinstance(y, str):
                y.encode("utf-8")
            elif isinstance(y, _Obj):
                for k, v in y:
                    k.encode("utf-8")
                    stack.append(v)
            elif isinstance(y, list):
                stack.extend(y)

    try:
        check_strings(v)
    except UnicodeEncodeError as e:
        raise _JSONError(str(e)) from None
    return v


def _is_u64(v) -> bool:
    return type(v) is int and 0 <= v < U64


def classify(blob: bytes) -> tuple[str | None, set[str]]:
    """(first rule broken in pare's order, or None; every rule broken at that stage)."""
    if len(blob) < 8:
        return "file-too-small", {"file-too-small"}
    (n,) = struct.unpack("<Q", blob[:8])
    if n > MAX_HEADER:
        return "header-too-large", {"header-too-large"}
    if 8 + n > len(blob):
        return "header-out-of-bounds", {"header-out-of-bounds"}
    try:
        text = blob[8 : 8 + n].decode("utf-8")
    except UnicodeDecodeError:
        return "header-utf8", {"header-utf8"}
    try:
        top = _loads(text)
    except _JSONError:
        return "header-json", {"header-json"}
    if not isinstance(top, _Obj):
        return "header-json", {"header-json"}

    found: list[str] = []
    names: set[str] = set()
    tensors = []
    seen_meta = False
    for key, val in top:
        if key == "__metadata__":
            if seen_meta:
                found.append("duplicate-metadata")
            seen_meta = True
            # null is read as "no metadata", by the reference and by pare
            if val is not None and not (isinstance(val, _Obj) and all(isinstance(v, str) for _, v in val)):
                found.append("metadata-not-string-map")
            continue
        if key in names:
            found.append("duplicate-tensor")
        names.add(key)
        if not isinstance(val, _Obj):
            found.append("header-structure")
            continue
        keys = [k for k, _ in val]
        if len(keys) != len(set(keys)):
            found.append("duplicate-field")
        d = dict(val)
        dtype, shape, offs = d.get("dtype"), d.get("shape"), d.get("data_offsets")
        if not (
            isinstance(dtype, str)
            and isinstance(shape, list)
            and not isinstance(shape, _Obj)
            and all(_is_u64(x) for x in shape)
            and isinstance(offs, list)
            and not isinstance(offs, _Obj)
            and len(offs) == 2
            and all(_is_u64(x) for x in offs)
        ):
            found.append("header-structure")
            continue
        if dtype not in DTYPE_BITS:
            found.append("unknown-dtype")
            continue
        tensors.append((key, dtype, shape, offs[0], offs[1]))
    if found:
        return found[0], set(found)

    tensors.sort(key=lambda t: (t[3], t[4]))
    expect = 0
    for _, _, _, start, end in tensors:
        if start != expect or end < start:
            found.append("offsets-contiguous")
        expect = end
    for _, dtype, shape, start, end in tensors:
        count = 1
        for d in shape:
            count *= d
            if count >= U64:
                break
        if count >= U64:
            found.append("shape-overflow")
            continue
        bits = count * DTYPE_BITS[dtype]
        if bits % 8 == 0 and bits // 8 >= U64:
            found.append("shape-overflow")
            continue
        if end < start:
            continue  # already an offsets-contiguous problem
        if bits % 8 != 0 or end - start != bits // 8:
            found.append("span-mismatch")
    data_len = len(blob) - 8 - n
    if data_len != (tensors[-1][4] if tensors else 0):
        found.append("data-size")
    if found:
        return found[0], set(found)
    return None, set()


def check(all_cases: list[Case]) -> None:
    """Refuse a corpus whose files do not break exactly the rule they claim."""
    problems = []
    names = [c.name for c in all_cases]
    if len(names) != len(set(names)):
        problems.append("duplicate file names")
    for c in all_cases:
        first, every = classify(c.blob)
        if c.section == "valid":
            if first is not None:
                problems.append(f"{c.name}: meant valid, model says {first}")
        elif c.section == "ambiguous":
            if first is None:
                problems.append(f"{c.name}: meant to be rejected, model accepts it")
        else:
            if c.rule not in RULES:
                problems.append(f"{c.name}: unknown rule {c.rule}")
            if first != c.rule:
                problems.append(f"{c.name}: expected {c.rule}, model says {first}")
            elif every != {c.rule}:
                problems.append(f"{c.name}: breaks several rules at one stage: {sorted(every)}")
    missing = set(RULES) - {c.rule for c in all_cases if c.section == "malformed"}
    if missing:
        problems.append(f"rules without a file: {sorted(missing)}")
    if problems:
        raise AssertionError("bad corpus:\n  " + "\n  ".join(problems))


def manifest(all_cases: list[Case]) -> dict:
    m = {"version": 1, "rules": RULES, "malformed": {}, "ambiguous": {}, "valid": {}}
    for c in all_cases:
        if c.section == "malformed":
            m["malformed"][c.name] = {"rule": c.rule, "reference_accepts": c.reference_accepts, "what": c.what}
        elif c.section == "ambiguous":
            m["ambiguous"][c.name] = {"rules": c.rules, "reference_accepts": c.reference_accepts, "what": c.what}
        else:
            m["valid"][c.name] = {"what": c.what}
    return m


def write_corpus(outdir) -> dict:
    """Write every file and manifest.json into outdir (created if needed); return the manifest."""
    all_cases = cases()
    check(all_cases)
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    for c in all_cases:
        (outdir / c.name).write_bytes(c.blob)
    m = manifest(all_cases)
    (outdir / "manifest.json").write_text(json.dumps(m, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return m


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("outdir", help="directory to write the corpus and manifest.json into")
    args = ap.parse_args(argv)
    m = write_corpus(args.outdir)
    by_rule: dict[str, int] = {}
    for e in m["malformed"].values():
        by_rule[e["rule"]] = by_rule.get(e["rule"], 0) + 1
    for r in RULES:
        print(f"{r:26} {by_rule.get(r, 0)}")
    print(f"{'ambiguous':26} {len(m['ambiguous'])}")
    print(f"{'valid':26} {len(m['valid'])}")
    print(f"wrote {sum(by_rule.values()) + len(m['ambiguous']) + len(m['valid'])} files to {args.outdir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
