"""Self-tests of tools/pare_reader.py, independent of the pare binary.

A tiny writer that follows formats/pare.md makes files with each of the four encodings;
the reader must decode them exactly and reject every broken rule of the spec's "Reader
rules" section, naming the file and the tensor. A few hand-computed byte layouts pin
the encodings down so that the writer and the reader cannot share a misreading.
"""

from __future__ import annotations

import json
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import zstandard

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pare_reader as pr  # noqa: E402
from pare_reader import DTYPE_BITS, MAGIC, PareFile, PareFormatError, crc32c  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _require_pare_binary():
    """Overrides conftest's autouse check: these tests do not run pare."""
    yield


# --------------------------------------------------------------------------- a tiny writer


def zc(data: bytes, **kw) -> bytes:
    return zstandard.ZstdCompressor(level=3, **kw).compress(bytes(data))


def _grouped(a: np.ndarray) -> list[bytes]:
    """(E, w) uint8 -> w compressed byte streams."""
    return [zc(np.ascontiguousarray(a[:, k]).tobytes()) for k in range(a.shape[1])]


def encode(encoding: str, chunk: bytes, w: int, params: dict | None) -> list[bytes]:
    if encoding == "raw":
        return [chunk]
    a = np.frombuffer(chunk, dtype=np.uint8).reshape(-1, w)
    if encoding == "bytegroup-zstd":
        return _grouped(a)
    if encoding == "bitmask-zstd":
        nz = a.any(axis=1)  # zero = all bits zero; -0.0 is kept
        return [zc(np.packbits(nz, bitorder="little").tobytes())] + _grouped(a[nz])
    if encoding == "nm-zstd":
        n, m = params["n"], params["m"]
        b = max(1, int(np.ceil(np.log2(m))))
        g = a.reshape(-1, m, w)
        nz = g.any(axis=2)
        assert (nz.sum(axis=1) <= n).all(), "writer given data that is not N:M sparse"
        # non-zero positions first (increasing), then zero positions (increasing); keep N, sort
        pos = np.sort(np.argsort(~nz, axis=1, kind="stable")[:, :n], axis=1)
        values = g[np.arange(g.shape[0])[:, None], pos].reshape(-1, w)
        bits = ((pos.reshape(-1, 1) >> np.arange(b)) & 1).astype(np.uint8).reshape(-1)
        return _grouped(values) + [zc(np.packbits(bits, bitorder="little").tobytes())]
    raise ValueError(encoding)


@dataclass
class T:
    name: str
    dtype: str
    shape: list
    data: bytes
    encoding: str = "raw"
    params: dict | None = None
    chunk: int | None = None  # elements per chunk (default: one chunk)


def build(path, tensors, metadata={"format": "pt"}, *, chunk_hook=None, index_hook=None,
          index_bytes_hook=None, blob_hook=None, gap_after=None) -> Path:
    """Write a .pare file following formats/pare.md. Hooks let a test break one rule:
    chunk_hook(name, i, frames) -> frames (CRCs are computed after it), index_hook(index,
    index_offset) edits the index dict, index_bytes_hook(bytes) -> bytes edits the JSON
    text (CRC computed after both), blob_hook(bytearray) edits the finished file."""
    out = bytearray(MAGIC + struct.pack("<HHI", 1, 0, 0))

    def pad():
        out.extend(b"\0" * (-len(out) % 64))

    entries = []
    for t in tensors:
        bits = DTYPE_BITS[t.dtype]
        E = int(np.prod(t.shape)) if t.shape else 1
        assert len(t.data) * 8 == E * bits
        step = t.chunk or max(E, 1)
        chunks = []
        for i, start in enumerate(range(0, E, step)):
            el = min(step, E - start)
            frames = encode(t.encoding, t.data[start * bits // 8 : (start + el) * bits // 8], bits // 8, t.params)
            if chunk_hook:
                frames = chunk_hook(t.name, i, frames)
            stored = b"".join(frames)
            pad()
            c = {"offset": len(out), "length": len(stored), "elements": el, "crc32c": crc32c(stored)}
            if t.encoding != "raw":
                c["streams"] = [len(f) for f in frames]
            out.extend(stored)
            chunks.append(c)
        e = {"name": t.name, "dtype": t.dtype, "shape": list(t.shape), "encoding": t.encoding}
        if t.params is not None:
            e["parameters"] = t.params
        e.update(size=len(t.data), crc32c=crc32c(t.data), chunks=chunks)
        entries.append(e)
        if gap_after == t.name:
            pad()
            out.extend(b"\0" * 64)
    pad()
    index = {"format": "pare", "version": 1, "metadata": metadata, "tensors": entries}
    if index_hook:
        index_hook(index, len(out))
    raw = json.dumps(index).encode()
    if index_bytes_hook:
        raw = index_bytes_hook(raw)
    offset = len(out)
    out.extend(raw)
    out.extend(struct.pack("<QQII", offset, len(raw), crc32c(raw), 0) + MAGIC)
    if blob_hook:
        blob_hook(out)
    Path(path).write_bytes(bytes(out))
    return Path(path)


# --------------------------------------------------------------------------- test data

RNG_SEED = 20240611


def as_dtype(f32: np.ndarray, dtype: str) -> bytes:
    f32 = np.ascontiguousarray(f32, dtype=np.float32)
    if dtype == "F32":
        return f32.tobytes()
    if dtype == "F16":
        return f32.astype(np.float16).tobytes()
    if dtype == "BF16":
        return (f32.view(np.uint32) >> 16).astype(np.uint16).tobytes()
    raise ValueError(dtype)


def neg_zero(dtype: str) -> float:
    return -0.0  # survives every conversion above as the sign bit alone


def nm_data(rng, dtype, shape, n, m) -> bytes:
    """Every group of m has at most n non-zeros; some have fewer (even none), and some
    keep a negative zero, which is not zero for this format."""
    v = rng.standard_normal(shape).astype(np.float32).reshape(-1, m)
    for g in range(v.shape[0]):
        k = int(rng.integers(0, n + 1)) if g % 3 else n
        if g % 5 == 1:
            k = max(k, 1)
        keep = rng.choice(m, size=k, replace=False)
        row = np.zeros(m, dtype=np.float32)
        row[keep] = v[g, keep]
        if k and g % 5 == 1:
            row[keep[0]] = neg_zero(dtype)
        v[g] = row
    return as_dtype(v.reshape(shape), dtype)


def sparse_data(rng, dtype, shape, zero_frac) -> bytes:
    v = rng.standard_normal(shape).astype(np.float32)
    v[rng.random(shape) < zero_frac] = 0.0
    v.reshape(-1)[::7] = -0.0
    return as_dtype(v, dtype)


def sample_tensors() -> list[T]:
    rng = np.random.default_rng(RNG_SEED)
    dense = lambda dt, shape: as_dtype(rng.standard_normal(shape).astype(np.float32), dt)  # noqa: E731
    return [
        T("dense.bf16", "BF16", [8, 300], dense("BF16", [8, 300]), "bytegroup-zstd", {"stream_levels": [1, 9]}, chunk=1000),
        T("dense.f16", "F16", [7, 33], dense("F16", [7, 33]), "bytegroup-zstd", chunk=50),
        T("dense.f32", "F32", [5, 64], dense("F32", [5, 64]), "bytegroup-zstd"),
        T("bytegroup.i64", "I64", [3, 5], rng.integers(-9, 9, 15).astype("<i8").tobytes(), "bytegroup-zstd"),
        T("ints", "I64", [3, 5], rng.integers(-(2**40), 2**40, 15).astype("<i8").tobytes()),
        T("bytes", "U8", [17], rng.integers(0, 256, 17).astype(np.uint8).tobytes(), chunk=5),
        T("mask", "BOOL", [9], (rng.random(9) < 0.5).astype(np.uint8).tobytes()),
        T("scalar", "F32", [], np.float32(3.5).tobytes()),
        T("empty", "F32", [0, 4], b""),
        T("empty.bg", "BF16", [4, 0], b"", "bytegroup-zstd"),
        T("fp4", "F4", [6, 4], rng.integers(0, 256, 12).astype(np.uint8).tobytes(), chunk=8),
        T("fp8", "F8_E4M3", [4, 8], rng.integers(0, 256, 32).astype(np.uint8).tobytes(), "bytegroup-zstd"),
        T("nm.2_4.bf16", "BF16", [6, 16], nm_data(rng, "BF16", [6, 16], 2, 4), "nm-zstd", {"n": 2, "m": 4}, chunk=32),
        T("nm.4_8.f32", "F32", [4, 16], nm_data(rng, "F32", [4, 16], 4, 8), "nm-zstd", {"n": 4, "m": 8}, chunk=16),
        T("nm.1_4.f16", "F16", [3, 8], nm_data(rng, "F16", [3, 8], 1, 4), "nm-zstd", {"n": 1, "m": 4}),
        T("nm.1_2.f32", "F32", [2, 6], nm_data(rng, "F32", [2, 6], 1, 2), "nm-zstd", {"n": 1, "m": 2}),
        T("nm.2_6.f32", "F32", [2, 12], nm_data(rng, "F32", [2, 12], 2, 6), "nm-zstd", {"n": 2, "m": 6}, chunk=12),
        T("nm.3_16.bf16", "BF16", [2, 32], nm_data(rng, "BF16", [2, 32], 3, 16), "nm-zstd", {"n": 3, "m": 16}),
        T("bitmask.f32", "F32", [10, 13], sparse_data(rng, "F32", [10, 13], 0.6), "bitmask-zstd", chunk=37),
        T("bitmask.bf16", "BF16", [3, 20], as_dtype(np.r_[np.zeros(40), -0.0, rng.standard_normal(19)], "BF16"),
          "bitmask-zstd", chunk=20),  # first two chunks all zero: empty value frames
        T("bitmask.f16", "F16", [9], sparse_data(rng, "F16", [9], 0.5), "bitmask-zstd"),
    ]


# --------------------------------------------------------------------------- CRC and hand-made layouts


def test_crc32c_check_value_and_fast_path():
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
    rng = np.random.default_rng(1)
    for n in (1, 63, 4095, 4096, 4097, 70_001, 1 << 20):
        d = rng.integers(0, 256, n).astype(np.uint8).tobytes()
        assert crc32c(d) == crc32c(d, fast=False), n


def test_hand_made_bytegroup_chunk(tmp_path):
    # BF16 elements 0x0201, 0x0403: stream 0 = low bytes [01 03], stream 1 = high bytes [02 04]
    data = bytes([0x01, 0x02, 0x03, 0x04])
    frames = encode("bytegroup-zstd", data, 2, None)
    assert [zstandard.ZstdDecompressor().decompress(f) for f in frames] == [b"\x01\x03", b"\x02\x04"]
    f = build(tmp_path / "m.pare", [T("t", "BF16", [2], data, "bytegroup-zstd")])
    assert PareFile(f).read_bytes("t") == data


def test_hand_made_nm_chunk(tmp_path):
    # 2:4 F32 row [0, 5, 0, 0 | 0, 7, 0, 9]: group 0 keeps positions 0 (padded zero, the lowest
    # zero position) and 1; group 1 keeps 1 and 3. Positions 0,1,1,3 in 2 bits, LSB first:
    # 00 | 01<<2 | 01<<4 | 11<<6 = 0xD4.
    row = np.array([0, 5, 0, 0, 0, 7, 0, 9], dtype=np.float32)
    frames = encode("nm-zstd", row.tobytes(), 4, {"n": 2, "m": 4})
    d = zstandard.ZstdDecompressor()
    assert d.decompress(frames[4]) == b"\xd4"
    vals = np.array([0, 5, 7, 9], dtype=np.float32).view(np.uint8).reshape(4, 4)
    assert [d.decompress(frames[k]) for k in range(4)] == [vals[:, k].tobytes() for k in range(4)]
    # the reader decodes frames made by hand, not by the writer
    hand = [zc(vals[:, k].tobytes()) for k in range(4)] + [zc(b"\xd4")]
    f = build(tmp_path / "m.pare", [T("t", "F32", [1, 8], row.tobytes(), "nm-zstd", {"n": 2, "m": 4})],
              chunk_hook=lambda name, i, fr: hand)
    assert PareFile(f).read_bytes("t") == row.tobytes()


def test_hand_made_bitmask_chunk(tmp_path):
    # non-zeros at 0, 3, 9 of 10: mask bytes 0b00001001, 0b00000010
    v = np.zeros(10, dtype=np.float32)
    v[[0, 3, 9]] = [1.0, -0.0, 2.5]
    frames = encode("bitmask-zstd", v.tobytes(), 4, None)
    d = zstandard.ZstdDecompressor()
    assert d.decompress(frames[0]) == b"\x09\x02"
    assert [len(d.decompress(fr)) for fr in frames[1:]] == [3, 3, 3, 3]
    f = build(tmp_path / "m.pare", [T("t", "F32", [10], v.tobytes(), "bitmask-zstd")])
    assert PareFile(f).read_bytes("t") == v.tobytes()


# --------------------------------------------------------------------------- round trips


def test_every_encoding_round_trips(tmp_path):
    tensors = sample_tensors()
    f = build(tmp_path / "model.pare", tensors, {"format": "pt", "note": "x"})
    pf = PareFile(f)
    assert pf.names() == [t.name for t in tensors]
    assert pf.metadata == {"format": "pt", "note": "x"}
    for t in tensors:
        info = pf.info(t.name)
        assert (info.dtype, info.shape, info.encoding) == (t.dtype, t.shape, t.encoding)
        assert pf.read_bytes(t.name) == t.data, t.name
    pf.verify_all()
    assert pf.layout_problems() == []
    assert len(pf.info("dense.bf16").chunks) == 3 and pf.info("dense.bf16").chunks[-1].elements == 400
    assert pf.info("empty").chunks == [] and pf.read_bytes("empty") == b""


def test_negative_zeros_are_kept(tmp_path):
    tensors = [t for t in sample_tensors() if t.encoding in ("nm-zstd", "bitmask-zstd")]
    for t in tensors:
        w = DTYPE_BITS[t.dtype] // 8
        a = np.frombuffer(t.data, dtype=np.uint8).reshape(-1, w)
        negz = (a[:, :-1] == 0).all(axis=1) & (a[:, -1] == 0x80)
        assert negz.any(), f"{t.name}: test data has no negative zero"
    f = build(tmp_path / "m.pare", tensors)
    pf = PareFile(f)
    for t in tensors:
        assert pf.read_bytes(t.name) == t.data


def test_empty_file_and_gaps(tmp_path):
    pf = PareFile(build(tmp_path / "e.pare", [], None))
    assert pf.names() == [] and pf.metadata is None
    pf.verify_all()
    assert pf.layout_problems() == []
    # a bigger (zero) gap is readable but is not the layout pare writes
    tensors = sample_tensors()[:3]
    pf = PareFile(build(tmp_path / "g.pare", tensors, gap_after="dense.f16"))
    pf.verify_all()
    assert pf.read_bytes("dense.f32") == tensors[2].data
    assert len(pf.layout_problems()) == 1


def write_sharded(folder: Path, tensors: list[T], per_shard: int, wm_edit=None):
    folder.mkdir()
    groups = [tensors[i : i + per_shard] for i in range(0, len(tensors), per_shard)]
    wm = {}
    for k, g in enumerate(groups):
        name = f"model-{k + 1:05d}-of-{len(groups):05d}.pare"
        build(folder / name, g)
        wm.update({t.name: name for t in g})
    if wm_edit:
        wm_edit(wm)
    total = sum(len(t.data) for t in tensors)
    (folder / pr.INDEX_JSON).write_text(json.dumps({"metadata": {"total_size": total}, "weight_map": wm}))
    (folder / "config.json").write_text("{}")


def test_read_folder_single_and_sharded(tmp_path):
    tensors = sample_tensors()
    single = tmp_path / "single"
    single.mkdir()
    build(single / "model.pare", tensors)
    sharded = tmp_path / "sharded"
    write_sharded(sharded, tensors, 6)
    for folder in (single, sharded):
        got = pr.read_folder(folder, verify=True)
        assert list(got) == [t.name for t in tensors]
        for t in tensors:
            g = got[t.name]
            assert (g.dtype, g.shape, g.data) == (t.dtype, t.shape, t.data)
        assert got["dense.f32"].array.shape == (5, 64) and got["dense.bf16"].array is None


def test_read_folder_rejects_bad_weight_map(tmp_path):
    tensors = sample_tensors()[:4]
    write_sharded(tmp_path / "a", tensors, 2, lambda wm: wm.update({"dense.f16": "model-00002-of-00002.pare"}))
    with pytest.raises(PareFormatError, match="dense.f16.*weight_map"):
        pr.read_folder(tmp_path / "a")
    write_sharded(tmp_path / "b", tensors, 2, lambda wm: wm.update({"ghost": "model-00001-of-00002.pare"}))
    with pytest.raises(PareFormatError, match="ghost.*in no shard"):
        pr.read_folder(tmp_path / "b")
    (tmp_path / "c").mkdir()
    with pytest.raises(PareFormatError, match="no model.pare"):
        pr.read_folder(tmp_path / "c")


def test_cli_to_safetensors(tmp_path, capsys):
    import torch
    from safetensors import safe_open

    tensors = [t for t in sample_tensors() if t.dtype != "F4"]
    folder = tmp_path / "m"
    write_sharded(folder, tensors, 5)
    out = tmp_path / "out.safetensors"
    assert pr.main([str(folder), "--verify", "--to-safetensors", str(out)]) == 0
    with safe_open(str(out), framework="pt") as st:
        assert st.metadata() == {"format": "pt"}
        assert set(st.keys()) == {t.name for t in tensors}
        for t in tensors:
            x = st.get_tensor(t.name)
            assert st.get_slice(t.name).get_dtype() == t.dtype
            assert list(x.shape) == t.shape
            raw = x.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if x.numel() else b""
            assert raw == t.data, t.name
    broken = tmp_path / "broken.pare"
    build(broken, tensors[:2], blob_hook=lambda b: b.__setitem__(100, b[100] ^ 1))
    assert pr.main([str(broken), "--verify"]) == 1
    assert "dense.bf16" in capsys.readouterr().err


# --------------------------------------------------------------------------- rejections


def base_tensors() -> list[T]:
    rng = np.random.default_rng(7)
    return [
        T("w.bg", "BF16", [4, 64], as_dtype(rng.standard_normal(256), "BF16"), "bytegroup-zstd", chunk=100),
        T("w.nm", "F32", [2, 8], nm_data(rng, "F32", [2, 8], 2, 4), "nm-zstd", {"n": 2, "m": 4}, chunk=8),
        T("w.nm6", "F32", [1, 6], nm_data(rng, "F32", [1, 6], 1, 6), "nm-zstd", {"n": 1, "m": 6}),
        T("w.bm", "F32", [10], sparse_data(rng, "F32", [10], 0.5), "bitmask-zstd"),
        T("w.f4", "F4", [8], bytes(range(4))),
        T("w.raw", "I32", [100], np.arange(100, dtype="<i4").tobytes(), chunk=40),
    ]


def tensor(index, name):
    return next(t for t in index["tensors"] if t["name"] == name)


def chunk(index, name, i):
    return tensor(index, name)["chunks"][i]


def blob(fn):
    return {"blob_hook": fn}


def idx(fn):
    return {"index_hook": lambda index, off: fn(index)}


def idx_off(fn):
    return {"index_hook": fn}


def ibytes(fn):
    return {"index_bytes_hook": fn}


def frames_of(name, i, fn):
    return {"chunk_hook": lambda n, k, fr: fn(fr) if (n, k) == (name, i) else fr}


def flip(pos):
    def f(b):
        b[pos] ^= 0x01
    return f


def footer_field(start, fn):
    def f(b):
        p = len(b) - 32 + start
        v = int.from_bytes(b[p : p + 8], "little")
        b[p : p + 8] = fn(v).to_bytes(8, "little")
    return f


def positions_frame(positions, b):
    bits = ((np.array(positions).reshape(-1, 1) >> np.arange(b)) & 1).astype(np.uint8).reshape(-1)
    return zc(np.packbits(bits, bitorder="little").tobytes())


def delete(getter, key):
    return lambda index: getter(index).pop(key)


def setv(getter, key, value):
    return lambda index: getter(index).__setitem__(key, value)


# (id, build kwargs, stage, tensor named or None, message fragment)
# stage: "open" = PareFile() fails; "read" = read_bytes(tensor) and verify_all fail;
#        "verify" = only verify_all fails (padding).
TOP = lambda i: i  # noqa: E731
T0 = lambda i: i["tensors"][0]  # noqa: E731
C0 = lambda i: i["tensors"][0]["chunks"][0]  # noqa: E731
REJECT = [
    # header
    ("header-magic", blob(flip(0)), "open", None, "bad magic in the file header"),
    ("header-magic-crlf", blob(lambda b: b.__setitem__(slice(4, 6), b"\n\n")), "open", None, "bad magic"),
    ("header-version", blob(lambda b: b.__setitem__(8, 2)), "open", None, "unsupported version 2"),
    ("header-flags", blob(lambda b: b.__setitem__(11, 0x80)), "open", None, "unknown flags"),
    ("header-reserved", blob(lambda b: b.__setitem__(15, 1)), "open", None, "reserved header field"),
    # footer
    ("footer-magic", blob(flip(-1)), "open", None, "bad magic in the footer"),
    ("footer-reserved", blob(lambda b: b.__setitem__(-12, 1)), "open", None, "reserved footer field"),
    ("footer-offset+1", blob(footer_field(0, lambda v: v + 1)), "open", None, "footer offsets do not fit"),
    ("footer-offset-huge", blob(footer_field(0, lambda v: v | 1 << 63)), "open", None, "footer offsets do not fit"),
    ("footer-length-1", blob(footer_field(8, lambda v: v - 1)), "open", None, "footer offsets do not fit"),
    ("footer-offset-in-header", None, "open", None, "footer offsets do not fit"),  # built specially
    ("truncated", blob(lambda b: b.__delitem__(slice(40, None))), "open", None, "shorter than"),
    ("appended", blob(lambda b: b.extend(b"\0" * 64)), "open", None, "bad magic in the footer"),
    ("footer-crc", blob(flip(-16)), "open", None, "index CRC-32C mismatch"),
    # index bytes
    ("index-crc", blob(lambda b: b.__setitem__(len(b) - 33, b[len(b) - 33] ^ 4)), "open", None, "index CRC-32C mismatch"),
    ("index-not-json", ibytes(lambda r: r[:-1]), "open", None, "not valid UTF-8 JSON"),
    ("index-not-utf8", ibytes(lambda r: r.replace(b'"pt"', b'"\xff"')), "open", None, "not valid UTF-8 JSON"),
    ("index-not-object", ibytes(lambda r: b"[" + r + b"]"), "open", None, "not an object"),
    ("index-duplicate-key", ibytes(lambda r: r.replace(b'"version": 1', b'"version": 1, "version": 1')), "open", None,
     "duplicate key"),
    # required fields
    *[(f"missing-{k}", idx(delete(TOP, k)), "open", None, f"required field '{k}'") for k in ("format", "version", "tensors")],
    *[(f"missing-tensor-{k}", idx(delete(T0, k)), "open", None if k == "name" else "w.bg", f"required field '{k}'")
      for k in ("name", "dtype", "shape", "encoding", "size", "crc32c", "chunks")],
    *[(f"missing-chunk-{k}", idx(delete(C0, k)), "open", "w.bg", f"required field 'chunks[].{k}'")
      for k in ("offset", "length", "elements", "crc32c", "streams")],
    ("missing-nm-parameters", idx(lambda i: tensor(i, "w.nm").pop("parameters")), "open", "w.nm", 'needs "parameters"'),
    ("missing-nm-m", idx(lambda i: tensor(i, "w.nm")["parameters"].pop("m")), "open", "w.nm", "'parameters.m'"),
    ("wrong-format", idx(setv(TOP, "format", "safetensors")), "open", None, '"format" is'),
    ("wrong-index-version", idx(setv(TOP, "version", 2)), "open", None, '"version" is 2'),
    ("bool-not-int", idx(setv(T0, "size", True)), "open", "w.bg", "not a JSON integer"),
    ("float-not-int", idx(setv(C0, "elements", 100.0)), "open", "w.bg", "not a JSON integer"),
    ("metadata-not-strings", idx(setv(TOP, "metadata", {"format": 1})), "open", None, "metadata"),
    ("duplicate-name", idx(lambda i: i["tensors"][1].__setitem__("name", "w.bg")), "open", "w.bg", "duplicate tensor name"),
    ("unknown-dtype", idx(setv(T0, "dtype", "F12")), "open", "w.bg", "unknown dtype"),
    ("unknown-encoding", idx(setv(T0, "encoding", "lz4")), "open", "w.bg", "unknown encoding"),
    ("size-mismatch", idx(lambda i: T0(i).__setitem__("size", T0(i)["size"] + 2)), "open", "w.bg", "size"),
    ("negative-dim", idx(setv(T0, "shape", [-4, -64])), "open", "w.bg", "non-negative"),
    ("sub-byte-non-raw", idx(lambda i: tensor(i, "w.f4").update(encoding="bytegroup-zstd")), "open", "w.f4", "sub-byte"),
    ("sub-byte-odd-chunk", idx(lambda i: tensor(i, "w.f4").update(shape=[7], size=3) or
                               chunk(i, "w.f4", 0).update(elements=7)), "open", "w.f4", "whole number of bytes"),
    ("nm-n-equals-m", idx(lambda i: tensor(i, "w.nm")["parameters"].update(n=4)), "open", "w.nm", "1 <= N < M <= 16"),
    ("nm-m-17", idx(lambda i: tensor(i, "w.nm")["parameters"].update(m=17)), "open", "w.nm", "1 <= N < M <= 16"),
    ("nm-m-not-dividing", idx(lambda i: tensor(i, "w.nm")["parameters"].update(m=3)), "open", "w.nm", "does not divide"),
    ("nm-int-dtype", idx(lambda i: tensor(i, "w.nm").update(dtype="I32")), "open", "w.nm", "F16, BF16 and F32"),
    ("nm-chunk-not-multiple", idx(lambda i: chunk(i, "w.nm", 0).update(elements=6) or chunk(i, "w.nm", 1).update(elements=10)),
     "open", "w.nm", "not a multiple of M"),
    # chunks
    ("chunk-unaligned", idx(lambda i: chunk(i, "w.raw", 1).update(offset=chunk(i, "w.raw", 1)["offset"] + 8)), "open",
     "w.raw", "not a multiple of 64"),
    ("chunk-overlaps-previous", idx(lambda i: chunk(i, "w.raw", 1).update(offset=chunk(i, "w.raw", 0)["offset"] + 64)),
     "open", "w.raw", "overlaps the previous chunk"),
    ("chunk-same-offset", idx(lambda i: chunk(i, "w.raw", 1).update(offset=chunk(i, "w.raw", 0)["offset"])), "open",
     "w.raw", "does not increase"),
    ("chunk-overlaps-header", idx(lambda i: C0(i).update(offset=0)), "open", "w.bg", "overlaps the file header"),
    ("chunk-overlaps-index", idx_off(lambda i, off: chunk(i, "w.raw", 2).update(offset=off - 64)), "open", "w.raw",
     "overlaps the index"),
    ("tensors-out-of-order", idx(lambda i: i["tensors"].reverse()), "open", None, "does not increase"),
    ("chunks-too-few", idx(lambda i: tensor(i, "w.raw")["chunks"].pop()), "open", "w.raw", "chunks cover 80 elements"),
    ("chunks-too-many", idx(lambda i: chunk(i, "w.bm", 0).update(elements=11)), "open", "w.bm", "chunks cover 11"),
    ("chunk-zero-elements", idx(lambda i: tensor(i, "w.raw")["chunks"].append(
        dict(chunk(i, "w.raw", 2), offset=chunk(i, "w.raw", 2)["offset"] + 128, length=0, elements=0))), "open",
     "w.raw", "must be positive"),
    ("empty-tensor-with-chunk", idx(lambda i: tensor(i, "w.raw").update(shape=[0], size=0)), "open", "w.raw",
     "chunks cover 100 elements, the tensor has 0"),
    ("raw-length", idx(lambda i: chunk(i, "w.raw", 0).update(length=161)), "open", "w.raw", "raw chunk length"),
    ("streams-sum", idx(lambda i: C0(i)["streams"].__setitem__(0, C0(i)["streams"][0] + 1)), "open", "w.bg", "add up"),
    ("streams-count", idx(lambda i: C0(i)["streams"].append(0)), "open", "w.bg", "needs 2 frames"),
    # data: checked when a tensor is decoded
    ("chunk-crc", blob(flip(64 + 3)), "read", "w.bg", "chunk CRC-32C mismatch"),
    ("chunk-crc-field", idx(lambda i: chunk(i, "w.raw", 1).update(crc32c=chunk(i, "w.raw", 1)["crc32c"] ^ 1)), "read",
     "w.raw", "chunk 1: chunk CRC-32C mismatch"),
    ("frame-too-long", frames_of("w.bg", 1, lambda fr: [zc(b"\0" * 101), fr[1]]), "read", "w.bg", "frame 0"),
    ("frame-too-short-nosize", frames_of("w.bg", 1, lambda fr: [zc(b"\0" * 99, write_content_size=False), fr[1]]),
     "read", "w.bg", "frame 0"),
    ("frame-too-long-nosize", frames_of("w.bg", 1, lambda fr: [zc(b"\0" * 101, write_content_size=False), fr[1]]),
     "read", "w.bg", "frame 0"),
    ("frame-not-zstd", frames_of("w.bg", 0, lambda fr: [b"\0" * 20, fr[1]]), "read", "w.bg", "frame 0"),
    ("frame-trailing-data", frames_of("w.bg", 0, lambda fr: [fr[0] + fr[0], fr[1]]), "read", "w.bg", "frame 0"),
    ("frames-swapped-lengths", frames_of("w.bm", 0, lambda fr: [fr[0] + fr[1][:1], fr[1][1:], *fr[2:]]), "read", "w.bm",
     "frame"),
    ("bitmask-wrong-count", frames_of("w.bm", 0, lambda fr: [zc(b"\xff\x03"), *fr[1:]]), "read", "w.bm", "frame 1"),
    ("bitmask-pad-bits", frames_of("w.bm", 0, lambda fr: [zc(bytes([zstandard.ZstdDecompressor().decompress(fr[0])[0],
                                                                     zstandard.ZstdDecompressor().decompress(fr[0])[1] | 0x80])),
                                                         *fr[1:]]), "read", "w.bm", "padded with zero bits"),
    ("nm-index-too-long", frames_of("w.nm", 0, lambda fr: [*fr[:4], zc(b"\0\0\0")]), "read", "w.nm", "frame 4 (indices)"),
    ("nm-values-too-short", frames_of("w.nm", 0, lambda fr: [zc(b"\0" * 3), *fr[1:]]), "read", "w.nm", "frame 0"),
    ("nm-not-increasing", frames_of("w.nm", 1, lambda fr: [*fr[:4], positions_frame([0, 1, 3, 1], 2)]), "read", "w.nm",
     "chunk 1: positions [3, 1] of group 1 are not increasing"),
    ("nm-equal-positions", frames_of("w.nm", 0, lambda fr: [*fr[:4], positions_frame([2, 2, 0, 1], 2)]), "read", "w.nm",
     "not increasing"),
    ("nm-position-too-big", frames_of("w.nm6", 0, lambda fr: [*fr[:4], positions_frame([7], 3)]), "read", "w.nm6",
     "position 7 >= M=6"),
    ("nm-index-pad-bits", frames_of("w.nm6", 0, lambda fr: [*fr[:4], zc(bytes([zstandard.ZstdDecompressor().decompress(
        fr[4])[0] | 0x80]))]), "read", "w.nm6", "padded with zero bits"),
    ("tensor-crc", idx(lambda i: tensor(i, "w.nm").update(crc32c=tensor(i, "w.nm")["crc32c"] ^ 0x100)), "read", "w.nm",
     "decoded tensor CRC-32C mismatch"),
    ("tensor-crc-kept-padding-value", frames_of("w.bm", 0, lambda fr: [zc(b"\xff\x03"), *[zc(b"\0" * 10)] * 4]), "read",
     "w.bm", "decoded tensor CRC-32C mismatch"),
    # padding: only a whole-file reader sees it
    ("padding-after-header", blob(lambda b: b.__setitem__(20, 1)), "verify", None, "padding after the file header"),
    ("padding-after-chunk", None, "verify", "w.bg", "padding after this tensor's chunk"),  # built specially
    ("padding-before-index", None, "verify", "w.raw", "padding after this tensor's chunk"),  # built specially
]


def _special(case, tensors, path):
    """Cases that need the clean file's layout first."""
    clean = PareFile(build(path, tensors))
    if case == "footer-offset-in-header":
        # index at 8 with a length that makes offset + length + 32 == size: only the header rule catches it
        size = clean.file_size
        return build(path, tensors, blob_hook=lambda b: b.__setitem__(slice(-32, -16), struct.pack("<QQ", 8, size - 40)))
    if case == "padding-after-chunk":
        c = clean.info("w.bg").chunks[0]
        pos = c.offset + c.length
        assert pos % 64, "test needs a chunk that does not end on a 64-byte boundary"
        return build(path, tensors, blob_hook=lambda b: b.__setitem__(pos, 0x40))
    if case == "padding-before-index":
        c = clean.info("w.raw").chunks[-1]
        pos = c.offset + c.length
        assert pos < clean.index_offset
        return build(path, tensors, blob_hook=lambda b: b.__setitem__(clean.index_offset - 1, 0x02))
    raise KeyError(case)


@pytest.mark.parametrize("case, kwargs, stage, tname, fragment", REJECT, ids=[r[0] for r in REJECT])
def test_rejects(case, kwargs, stage, tname, fragment, tmp_path):
    tensors = base_tensors()
    path = tmp_path / f"{case}.pare"
    if kwargs is None:
        path = _special(case, tensors, path)
    else:
        build(path, tensors, **kwargs)

    def check(e):
        msg = str(e.value)
        assert str(path) in msg, f"message does not name the file: {msg}"
        if tname is not None:
            assert f"tensor {tname!r}" in msg, f"message does not name tensor {tname}: {msg}"
        assert fragment in msg, f"{fragment!r} not in: {msg}"

    if stage == "open":
        with pytest.raises(PareFormatError) as e:
            PareFile(path)
        check(e)
        return
    pf = PareFile(path)
    if stage == "read":
        with pytest.raises(PareFormatError) as e:
            pf.read_bytes(tname)
        check(e)
    else:  # padding: every tensor still decodes
        for t in tensors:
            assert pf.read_bytes(t.name) == t.data
    with pytest.raises(PareFormatError) as e:
        pf.verify_all()
    check(e)


def test_base_file_is_valid(tmp_path):
    """The rejection cases differ from this valid file by one rule each."""
    tensors = base_tensors()
    pf = PareFile(build(tmp_path / "ok.pare", tensors))
    pf.verify_all()
    assert pf.layout_problems() == []
    for t in tensors:
        assert pf.read_bytes(t.name) == t.data
