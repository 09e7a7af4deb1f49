#!/usr/bin/env python3
"""An independent reader of the `.pare` checkpoint format, version 1.

Written from formats/pare.md alone (no look at the Swift code), so that the interop suite
can check that what `pare` writes is what the spec says. Needs only the standard library,
numpy and `zstandard`.

    f = PareFile("model.pare")       # header, footer and index, every structural rule
    f.names(); f.info(name)          # dtype, shape, encoding, ...
    f.read_bytes(name)               # decode one tensor: chunk CRCs, frame sizes, tensor CRC
    f.verify_all()                   # decode everything and check that padding is zero
    f.metadata                       # the safetensors __metadata__ map (or None)
    read_folder(folder)              # model.pare, or shards + model.pare.index.json

    python tools/pare_reader.py FILE_OR_FOLDER [--verify] [--to-safetensors OUT.safetensors]

Every failure raises PareFormatError; its message names the file, the tensor (where there
is one) and the rule that was broken.

Where the spec leaves room, this reader takes the reading noted at the place it matters
(search for "ASSUMPTION").
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import zstandard

MAGIC = b"PARE\r\n\x1a\n"
VERSION = 1
HEADER_SIZE = 16
FOOTER_SIZE = 32
ALIGN = 64
INDEX_JSON = "model.pare.index.json"
SINGLE_FILE = "model.pare"

ENCODINGS = ("raw", "bytegroup-zstd", "nm-zstd", "bitmask-zstd")
SPARSE_FLOATS = ("F16", "BF16", "F32")

# safetensors dtype names (the list safetensors 0.8 accepts), in bits per element.
DTYPE_BITS = {
    "BOOL": 8, "U8": 8, "I8": 8,
    "F8_E5M2": 8, "F8_E4M3": 8, "F8_E8M0": 8, "F8_E4M3FNUZ": 8, "F8_E5M2FNUZ": 8,
    "I16": 16, "U16": 16, "F16": 16, "BF16": 16,
    "I32": 32, "U32": 32, "F32": 32,
    "I64": 64, "U64": 64, "F64": 64, "C64": 64,
    # sub-byte kinds: `raw` only
    "F4": 4, "F6_E2M3": 6, "F6_E3M2": 6,
}

# numpy view of a decoded tensor, where numpy has the type.
NUMPY_DTYPES = {
    "BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I16": np.int16, "U16": np.uint16,
    "F16": np.float16, "I32": np.int32, "U32": np.uint32, "F32": np.float32,
    "I64": np.int64, "U64": np.uint64, "F64": np.float64, "C64": np.complex64,
}


class PareFormatError(ValueError):
    """A file that breaks a rule of formats/pare.md. The message names the file, the
    tensor where there is one, and the rule."""


# --------------------------------------------------------------------------- CRC-32C

_POLY = 0x82F63B78  # Castagnoli, reflected


# A chunk decodes to at most 2^28 bytes (formats/pare.md, reader rules).
MAX_CHUNK_BYTES = 1 << 28

def _make_table() -> list[int]:
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()
_TABLE_NP = np.array(_TABLE, dtype=np.uint32)


def _crc_update_py(reg: int, data) -> int:
    """Byte-at-a-time table-driven update of the raw (not inverted) CRC register."""
    t = _TABLE
    for b in bytes(data):
        reg = t[(reg ^ b) & 0xFF] ^ (reg >> 8)
    return reg


@functools.lru_cache(maxsize=None)
def _zero_shift_tables(nbytes: int) -> tuple[list[int], ...]:
    """The register update for `nbytes` zero bytes is linear over GF(2); return it as four
    256-entry tables, one per register byte, so that applying it is four look-ups."""
    cols = []
    for i in range(32):
        x = 1 << i
        for _ in range(nbytes):
            x = _TABLE[x & 0xFF] ^ (x >> 8)
        cols.append(x)
    tables = []
    for k in range(4):
        t = [0] * 256
        for v in range(1, 256):
            low = (v & -v).bit_length() - 1
            t[v] = t[v & (v - 1)] ^ cols[8 * k + low]
        tables.append(t)
    return tuple(tables)


def _crc_update_np(reg: int, data) -> int:
    """Same result as _crc_update_py, faster: the data is cut into K blocks of L bytes whose
    registers (started from 0) numpy computes side by side; since the update is linear,
    the register after block j is shift_L(register before it) ^ block_register_j."""
    buf = np.frombuffer(data, dtype=np.uint8)
    n = buf.size
    L = 256 if n < (1 << 22) else 4096
    K = n // L
    blocks = np.ascontiguousarray(buf[: K * L].reshape(K, L).T)  # row i = byte i of every block
    r = np.zeros(K, dtype=np.uint32)
    for i in range(L):
        r = _TABLE_NP[(r ^ blocks[i]) & 0xFF] ^ (r >> 8)
    t0, t1, t2, t3 = _zero_shift_tables(L)
    for x in r.tolist():
        reg = t0[reg & 0xFF] ^ t1[(reg >> 8) & 0xFF] ^ t2[(reg >> 16) & 0xFF] ^ t3[reg >> 24] ^ x
    return _crc_update_py(reg, buf[K * L :].tobytes())


def crc32c(data, *, fast: bool = True) -> int:
    """CRC-32C of `data` (bytes-like): reflected polynomial 0x82F63B78, initial value and
    final XOR 0xFFFFFFFF. crc32c(b"123456789") == 0xE3069283."""
    mv = memoryview(data).cast("B")
    if fast and len(mv) >= 4096:
        reg = _crc_update_np(0xFFFFFFFF, mv)
    else:
        reg = _crc_update_py(0xFFFFFFFF, mv)
    return reg ^ 0xFFFFFFFF


# --------------------------------------------------------------------------- index model


@dataclass
class ChunkInfo:
    offset: int
    length: int
    elements: int
    crc32c: int
    streams: list[int] | None


@dataclass
class TensorInfo:
    name: str
    dtype: str
    shape: list[int]
    encoding: str
    parameters: dict
    size: int
    crc32c: int
    chunks: list[ChunkInfo]
    elements: int = 0

    @property
    def stored(self) -> int:
        """Stored bytes (sum of chunk lengths; padding not counted)."""
        return sum(c.length for c in self.chunks)


@dataclass
class PareTensor:
    """One decoded tensor. `data` is its exact bytes; `array` a numpy view when numpy has
    the dtype (BF16, FP8 and sub-byte kinds: None; use data + dtype + shape)."""

    name: str
    dtype: str
    shape: list[int]
    encoding: str
    data: bytes
    file: str = ""

    @property
    def array(self):
        np_dtype = NUMPY_DTYPES.get(self.dtype)
        if np_dtype is None:
            return None
        return np.frombuffer(self.data, dtype=np.dtype(np_dtype).newbyteorder("<")).reshape(self.shape)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _no_duplicate_keys(pairs):
    out = {}
    for k, v in pairs:
        if k in out:
            # ASSUMPTION: a JSON object with a repeated key is not valid index JSON.
            raise ValueError(f"duplicate key {k!r} in a JSON object")
        out[k] = v
    return out


def _align(n: int) -> int:
    return (n + ALIGN - 1) // ALIGN * ALIGN


def _bits_per_position(m: int) -> int:
    return max(1, math.ceil(math.log2(m)))


# --------------------------------------------------------------------------- the file


class PareFile:
    """A `.pare` file: header, footer and index parsed and checked on construction."""

    def __init__(self, path):
        self.path = Path(path)
        self._where = str(self.path)
        try:
            self.file_size = os.path.getsize(self.path)
        except OSError as e:
            raise PareFormatError(f"{self._where}: cannot read: {e.strerror or e}") from e
        if self.file_size < HEADER_SIZE + FOOTER_SIZE:
            self._fail(f"file is {self.file_size} bytes, shorter than the 16-byte header plus the 32-byte footer")
        header = self._pread(0, HEADER_SIZE)
        footer = self._pread(self.file_size - FOOTER_SIZE, FOOTER_SIZE)
        self._check_header(header)
        self._check_footer(footer)
        raw_index = self._pread(self.index_offset, self.index_length)
        got = crc32c(raw_index)
        if got != self.index_crc32c:
            self._fail(f"index CRC-32C mismatch (footer says 0x{self.index_crc32c:08x}, index bytes give 0x{got:08x})")
        self.index = self._parse_json(raw_index)
        self.tensors: list[TensorInfo] = []
        self._by_name: dict[str, TensorInfo] = {}
        self._check_index(self.index)

    # ------------------------------------------------------------------ helpers

    def _fail(self, msg: str, tensor: str | None = None, chunk: int | None = None):
        where = self._where
        if tensor is not None:
            where += f": tensor {tensor!r}"
        if chunk is not None:
            where += f": chunk {chunk}"
        raise PareFormatError(f"{where}: {msg}")

    def _pread(self, offset: int, length: int) -> bytes:
        with open(self.path, "rb") as f:
            f.seek(offset)
            data = f.read(length)
        if len(data) != length:
            self._fail(f"short read: {len(data)} of {length} bytes at offset {offset}")
        return data

    # ------------------------------------------------------------------ header / footer

    def _check_header(self, h: bytes):
        if h[:8] != MAGIC:
            self._fail(f"bad magic in the file header: {h[:8]!r}, expected {MAGIC!r}")
        version = int.from_bytes(h[8:10], "little")
        flags = int.from_bytes(h[10:12], "little")
        reserved = int.from_bytes(h[12:16], "little")
        if version != VERSION:
            self._fail(f"unsupported version {version} in the file header (this reader reads version {VERSION})")
        if flags != 0:
            self._fail(f"unknown flags 0x{flags:04x} in the file header")
        if reserved != 0:
            self._fail(f"reserved header field is 0x{reserved:08x}, must be 0")
        self.version = version

    def _check_footer(self, f: bytes):
        if f[24:32] != MAGIC:
            self._fail(f"bad magic in the footer: {f[24:32]!r}, expected {MAGIC!r}")
        self.index_offset = int.from_bytes(f[0:8], "little")
        self.index_length = int.from_bytes(f[8:16], "little")
        self.index_crc32c = int.from_bytes(f[16:20], "little")
        reserved = int.from_bytes(f[20:24], "little")
        if reserved != 0:
            self._fail(f"reserved footer field is 0x{reserved:08x}, must be 0")
        if self.index_offset + self.index_length + FOOTER_SIZE != self.file_size:
            self._fail(
                f"footer offsets do not fit the file: index_offset {self.index_offset} + index_length "
                f"{self.index_length} + 32 != file size {self.file_size}"
            )
        if self.index_offset < HEADER_SIZE:
            self._fail(f"footer offsets do not fit the file: index_offset {self.index_offset} is inside the header")

    def _parse_json(self, raw: bytes):
        try:
            text = raw.decode("utf-8")
            obj = json.loads(text, object_pairs_hook=_no_duplicate_keys)
        except (UnicodeDecodeError, ValueError) as e:
            self._fail(f"index is not valid UTF-8 JSON: {e}")
        if not isinstance(obj, dict):
            self._fail(f"index JSON is a {type(obj).__name__}, not an object")
        return obj

    # ------------------------------------------------------------------ index

    def _need(self, obj: dict, key: str, kind, what: str, tensor=None, chunk=None):
        if key not in obj:
            self._fail(f"index lacks required field {what + key!r}", tensor, chunk)
        v = obj[key]
        ok = _is_int(v) if kind is int else isinstance(v, kind)
        if not ok:
            kname = "integer" if kind is int else getattr(kind, "__name__", str(kind))
            self._fail(f"index field {what + key!r} is {json.dumps(v)[:60]}, not a JSON {kname}", tensor, chunk)
        return v

    def _check_index(self, idx: dict):
        fmt = self._need(idx, "format", str, "")
        if fmt != "pare":
            self._fail(f'index "format" is {fmt!r}, expected "pare"')
        version = self._need(idx, "version", int, "")
        if version != VERSION:
            # ASSUMPTION: the index's version must equal the header's (1).
            self._fail(f'index "version" is {version}, expected {VERSION}')
        # ASSUMPTION: "metadata" may be absent or null (a safetensors file without
        # __metadata__); when present it must be an object of string -> string.
        md = idx.get("metadata")
        if md is not None:
            if not isinstance(md, dict) or not all(isinstance(v, str) for v in md.values()):
                self._fail('index "metadata" is not an object of string -> string')
        self.metadata = md
        tensors = self._need(idx, "tensors", list, "")

        prev_end = HEADER_SIZE  # end of the previous chunk (or of the header)
        prev_offset = -1
        for t in tensors:
            if not isinstance(t, dict):
                self._fail("an entry of index \"tensors\" is not an object")
            name = self._need(t, "name", str, "")
            if name in self._by_name:
                self._fail("duplicate tensor name", name)
            info = self._check_tensor(t, name)
            for i, c in enumerate(info.chunks):
                if c.offset % ALIGN:
                    self._fail(f"chunk offset {c.offset} is not a multiple of 64", name, i)
                if c.offset <= prev_offset:
                    self._fail(
                        f"chunk offset {c.offset} does not increase (previous chunk at {prev_offset})", name, i
                    )
                if c.offset < prev_end:
                    what = "the file header" if prev_offset < 0 else f"the previous chunk (which ends at {prev_end})"
                    self._fail(f"chunk at {c.offset}+{c.length} overlaps {what}", name, i)
                if c.offset + c.length > self.index_offset:
                    self._fail(
                        f"chunk at {c.offset}+{c.length} overlaps the index (at {self.index_offset})", name, i
                    )
                prev_offset, prev_end = c.offset, c.offset + c.length
            self.tensors.append(info)
            self._by_name[name] = info

    def _check_tensor(self, t: dict, name: str) -> TensorInfo:
        dtype = self._need(t, "dtype", str, "", name)
        if dtype not in DTYPE_BITS:
            self._fail(f"unknown dtype {dtype!r}", name)
        bits = DTYPE_BITS[dtype]
        shape = self._need(t, "shape", list, "", name)
        if not all(_is_int(d) and d >= 0 for d in shape):
            self._fail(f"shape {shape} is not a list of non-negative integers", name)
        encoding = self._need(t, "encoding", str, "", name)
        if encoding not in ENCODINGS:
            self._fail(f"unknown encoding {encoding!r}", name)
        if bits % 8 and encoding != "raw":
            self._fail(f"sub-byte dtype {dtype} with encoding {encoding!r} (only raw is allowed)", name)
        params = t.get("parameters", {})
        if not isinstance(params, dict):
            self._fail('"parameters" is not an object', name)
        size = self._need(t, "size", int, "", name)
        crc = self._need(t, "crc32c", int, "", name)
        if not 0 <= crc <= 0xFFFFFFFF:
            self._fail(f"crc32c {crc} is not a 32-bit unsigned integer", name)
        elements = math.prod(shape)
        if elements * bits % 8:
            self._fail(f"{elements} elements of {dtype} are not a whole number of bytes", name)
        if size != elements * bits // 8:
            self._fail(f"size {size} is not elements x dtype size ({elements} x {bits // 8 if bits % 8 == 0 else bits / 8} = {elements * bits // 8})", name)

        n = m = None
        if encoding == "nm-zstd":
            if "parameters" not in t:
                self._fail('nm-zstd needs "parameters" {"n": N, "m": M}', name)
            n = self._need(params, "n", int, "parameters.", name)
            m = self._need(params, "m", int, "parameters.", name)
            if not 1 <= n < m <= 16:
                self._fail(f"nm-zstd parameters n={n}, m={m} break 1 <= N < M <= 16", name)
            if dtype not in SPARSE_FLOATS:
                self._fail(f"nm-zstd is for F16, BF16 and F32 tensors, not {dtype}", name)
            if len(shape) < 1:
                self._fail("nm-zstd needs a tensor of at least one dimension", name)
            if shape[-1] % m:
                self._fail(f"nm-zstd M={m} does not divide the last dimension {shape[-1]}", name)
        # ASSUMPTION: bytegroup-zstd and bitmask-zstd are accepted for any whole-byte dtype
        # (the spec names F16/BF16/F32 as their use, and bytegroup "other fixed-width types").

        raw_chunks = self._need(t, "chunks", list, "", name)
        chunks = []
        total = 0
        for i, c in enumerate(raw_chunks):
            if not isinstance(c, dict):
                self._fail("chunk entry is not an object", name, i)
            off = self._need(c, "offset", int, "chunks[].", name, i)
            length = self._need(c, "length", int, "chunks[].", name, i)
            el = self._need(c, "elements", int, "chunks[].", name, i)
            ccrc = self._need(c, "crc32c", int, "chunks[].", name, i)
            if off < 0 or length < 0:
                self._fail(f"negative offset or length ({off}, {length})", name, i)
            if not 0 <= ccrc <= 0xFFFFFFFF:
                self._fail(f"crc32c {ccrc} is not a 32-bit unsigned integer", name, i)
            if el <= 0:
                self._fail(f"chunk has {el} elements; a chunk size must be positive", name, i)
            if el * bits // 8 > MAX_CHUNK_BYTES:
                self._fail(f"chunk decodes to {el * bits // 8} bytes, more than {MAX_CHUNK_BYTES}", name, i)
            streams = None
            if encoding == "raw":
                if el * bits % 8:
                    # ASSUMPTION: a raw chunk of a sub-byte dtype holds a whole number of bytes.
                    self._fail(f"{el} elements of {dtype} are not a whole number of bytes", name, i)
                if length != el * bits // 8:
                    self._fail(f"raw chunk length {length} != elements x dtype size ({el * bits // 8})", name, i)
            else:
                streams = self._need(c, "streams", list, "chunks[].", name, i)
                if not all(_is_int(s) and s >= 0 for s in streams):
                    self._fail(f"streams {streams} is not a list of non-negative integers", name, i)
                w = bits // 8
                want = w if encoding == "bytegroup-zstd" else w + 1
                if len(streams) != want:
                    self._fail(f"{encoding} chunk of {dtype} needs {want} frames, streams lists {len(streams)}", name, i)
                if sum(streams) != length:
                    self._fail(f"frame lengths {streams} add up to {sum(streams)}, not the chunk length {length}", name, i)
                if encoding == "nm-zstd" and el % m:
                    self._fail(f"nm-zstd chunk of {el} elements is not a multiple of M={m}", name, i)
            chunks.append(ChunkInfo(off, length, el, ccrc, streams))
            total += el
        if total != elements:
            self._fail(f"chunks cover {total} elements, the tensor has {elements}", name)
        return TensorInfo(name, dtype, list(shape), encoding, params, size, crc, chunks, elements)

    # ------------------------------------------------------------------ public API

    def names(self) -> list[str]:
        return [t.name for t in self.tensors]

    def info(self, name: str) -> TensorInfo:
        try:
            return self._by_name[name]
        except KeyError:
            raise KeyError(f"{self._where}: no tensor {name!r}") from None

    def __contains__(self, name) -> bool:
        return name in self._by_name

    def read_bytes(self, name: str, *, _blob: bytes | None = None) -> bytes:
        """Decode one tensor, checking every chunk's CRC, every frame's decompressed size
        and the decoded tensor's CRC."""
        t = self.info(name)
        parts = []
        for i, c in enumerate(t.chunks):
            stored = _blob[c.offset : c.offset + c.length] if _blob is not None else self._pread(c.offset, c.length)
            got = crc32c(stored)
            if got != c.crc32c:
                self._fail(f"chunk CRC-32C mismatch (index says 0x{c.crc32c:08x}, stored bytes give 0x{got:08x})", name, i)
            parts.append(self._decode_chunk(t, i, c, stored))
        data = b"".join(parts)
        if len(data) != t.size:  # cannot happen when the index checks passed; kept as a guard
            self._fail(f"decoded {len(data)} bytes, size says {t.size}", name)
        got = crc32c(data)
        if got != t.crc32c:
            self._fail(f"decoded tensor CRC-32C mismatch (index says 0x{t.crc32c:08x}, decoded bytes give 0x{got:08x})", name)
        return data

    def read(self, name: str) -> PareTensor:
        t = self.info(name)
        return PareTensor(name, t.dtype, list(t.shape), t.encoding, self.read_bytes(name), self.path.name)

    def verify_all(self) -> None:
        """Decode every tensor (all checks of read_bytes) and check that every byte that
        belongs to no chunk, between the header and the index, is zero."""
        with open(self.path, "rb") as f:
            blob = f.read()
        if len(blob) != self.file_size:
            self._fail("file changed size while being read")
        pos = HEADER_SIZE
        owner = None  # the tensor whose chunk precedes `pos`
        for t in self.tensors:
            for c in t.chunks:
                self._check_padding(blob, pos, c.offset, owner)
                pos = c.offset + c.length
                owner = t.name
            self.read_bytes(t.name, _blob=blob)
        self._check_padding(blob, pos, self.index_offset, owner)

    def _check_padding(self, blob: bytes, start: int, end: int, owner: str | None):
        gap = np.frombuffer(blob, dtype=np.uint8, count=end - start, offset=start)
        nz = np.flatnonzero(gap)
        if nz.size:
            at = start + int(nz[0])
            if owner is None:
                self._fail(f"padding after the file header is not zero (byte at offset {at})")
            self._fail(f"padding after this tensor's chunk is not zero (byte at offset {at})", owner)

    def layout_problems(self) -> list[str]:
        """Departures from the layout `pare` is described as writing (not reader rules):
        the first chunk at 64, each next chunk right after the fewest padding bytes, and
        the index right after the last chunk's padding."""
        out = []
        pos = HEADER_SIZE
        for t in self.tensors:
            for i, c in enumerate(t.chunks):
                if c.offset != _align(pos):
                    out.append(f"tensor {t.name!r} chunk {i} at {c.offset}, expected {_align(pos)}")
                pos = c.offset + c.length
        # ASSUMPTION: with no chunk at all, the index follows the header directly (16) or
        # after the header's padding (64); both are accepted.
        allowed = {_align(pos)} if pos > HEADER_SIZE else {HEADER_SIZE, ALIGN}
        if self.index_offset not in allowed:
            out.append(f"index at {self.index_offset}, expected {sorted(allowed)}")
        return out

    # ------------------------------------------------------------------ decoding

    def _frames(self, t: TensorInfo, i: int, c: ChunkInfo, stored: bytes) -> list[bytes]:
        out, pos = [], 0
        for n in c.streams:
            out.append(stored[pos : pos + n])
            pos += n
        return out

    def _unzstd(self, frame: bytes, expected: int, what: str, t: TensorInfo, i: int) -> bytes:
        """One zstd frame that must decompress to exactly `expected` bytes."""
        try:
            declared = zstandard.frame_content_size(frame)
            if declared >= 0 and declared != expected:
                self._fail(f"{what} declares {declared} decompressed bytes, expected {expected}", t.name, i)
            out = zstandard.ZstdDecompressor().decompress(
                frame, max_output_size=max(expected, 1), allow_extra_data=False
            )
        except zstandard.ZstdError as e:
            self._fail(f"{what} does not decompress to {expected} bytes: {e}", t.name, i)
        if len(out) != expected:
            self._fail(f"{what} decompresses to {len(out)} bytes, expected {expected}", t.name, i)
        return out

    def _bytegroup(self, frames: list[bytes], count: int, w: int, t: TensorInfo, i: int, first: int = 0) -> np.ndarray:
        """Decompress w byte streams of `count` bytes each and interleave: shape (count, w)."""
        out = np.empty((count, w), dtype=np.uint8)
        for k in range(w):
            raw = self._unzstd(frames[first + k], count, f"frame {first + k} (byte stream {k})", t, i)
            out[:, k] = np.frombuffer(raw, dtype=np.uint8)
        return out

    def _decode_chunk(self, t: TensorInfo, i: int, c: ChunkInfo, stored: bytes) -> bytes:
        if t.encoding == "raw":
            return stored
        w = DTYPE_BITS[t.dtype] // 8
        E = c.elements
        frames = self._frames(t, i, c, stored)
        if t.encoding == "bytegroup-zstd":
            return self._bytegroup(frames, E, w, t, i).tobytes()
        if t.encoding == "nm-zstd":
            n, m = t.parameters["n"], t.parameters["m"]
            b = _bits_per_position(m)
            groups = E // m
            kept = groups * n
            values = self._bytegroup(frames, kept, w, t, i)
            idx_len = (kept * b + 7) // 8
            idx = np.frombuffer(self._unzstd(frames[w], idx_len, f"frame {w} (indices)", t, i), dtype=np.uint8)
            bitstream = np.unpackbits(idx, bitorder="little")
            if bitstream[kept * b :].any():
                self._fail("index frame's last byte is not padded with zero bits", t.name, i)
            pos = (bitstream[: kept * b].reshape(kept, b).astype(np.int64) << np.arange(b)).sum(axis=1)
            pos = pos.reshape(groups, n)
            if (pos >= m).any():
                g = int(np.flatnonzero((pos >= m).any(axis=1))[0])
                self._fail(f"group {g} has position {int(pos[g].max())} >= M={m}", t.name, i)
            if n > 1 and (np.diff(pos, axis=1) <= 0).any():
                g = int(np.flatnonzero((np.diff(pos, axis=1) <= 0).any(axis=1))[0])
                self._fail(f"positions {pos[g].tolist()} of group {g} are not increasing", t.name, i)
            out = np.zeros((groups, m, w), dtype=np.uint8)
            out[np.arange(groups)[:, None], pos] = values.reshape(groups, n, w)
            return out.tobytes()
        if t.encoding == "bitmask-zstd":
            mask_bytes = np.frombuffer(self._unzstd(frames[0], (E + 7) // 8, "frame 0 (bitmask)", t, i), dtype=np.uint8)
            bits = np.unpackbits(mask_bytes, bitorder="little")
            if bits[E:].any():
                self._fail("bitmask's last byte is not padded with zero bits", t.name, i)
            keep = bits[:E].astype(bool)
            values = self._bytegroup(frames, int(keep.sum()), w, t, i, first=1)
            out = np.zeros((E, w), dtype=np.uint8)
            out[keep] = values
            return out.tobytes()
        raise AssertionError(t.encoding)  # unreachable: checked when the index was read


# --------------------------------------------------------------------------- folders


def pare_files(folder) -> tuple[list[Path], dict | None]:
    """The .pare files of a model folder in shard order, and the shard index (or None)."""
    folder = Path(folder)
    index_path = folder / INDEX_JSON
    if index_path.is_file():
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"), object_pairs_hook=_no_duplicate_keys)
        except (UnicodeDecodeError, ValueError) as e:
            raise PareFormatError(f"{index_path}: not valid JSON: {e}") from e
        wm = index.get("weight_map") if isinstance(index, dict) else None
        if not isinstance(wm, dict) or not all(isinstance(v, str) for v in wm.values()):
            raise PareFormatError(f'{index_path}: lacks a "weight_map" object of tensor -> file')
        names = sorted(set(wm.values()))
        for n in names:
            if "/" in n or "\\" in n or not n.endswith(".pare"):
                raise PareFormatError(f"{index_path}: weight_map names {n!r}, not a .pare file in the folder")
        return [folder / n for n in names], index
    if (folder / SINGLE_FILE).is_file():
        return [folder / SINGLE_FILE], None
    raise PareFormatError(f"{folder}: no {SINGLE_FILE} and no {INDEX_JSON}")


def read_folder(folder, *, verify: bool = False) -> dict[str, PareTensor]:
    """Every tensor of a .pare model folder (single file or shards), decoded, in shard
    order then file order. With verify=True every file's padding is checked too."""
    folder = Path(folder)
    files, index = pare_files(folder)
    out: dict[str, PareTensor] = {}
    for path in files:
        pf = PareFile(path)
        if verify:
            pf.verify_all()
        for name in pf.names():
            if name in out:
                raise PareFormatError(f"{path}: tensor {name!r}: also in {out[name].file}")
            if index is not None and index["weight_map"].get(name) != path.name:
                raise PareFormatError(
                    f"{folder / INDEX_JSON}: tensor {name!r}: weight_map says "
                    f"{index['weight_map'].get(name)!r}, it is in {path.name}"
                )
            out[name] = pf.read(name)
    if index is not None:
        missing = sorted(set(index["weight_map"]) - set(out))
        if missing:
            raise PareFormatError(f"{folder / INDEX_JSON}: tensor {missing[0]!r}: in weight_map but in no shard")
    return out


def folder_metadata(folder) -> dict | None:
    """The __metadata__ of a .pare folder (the first file's; shards should agree)."""
    files, _ = pare_files(folder)
    return PareFile(files[0]).metadata


# --------------------------------------------------------------------------- safetensors


# safetensors' TensorSpec spells dtypes the torch way.
_SPEC_DTYPES = {
    "BOOL": "bool", "U8": "uint8", "I8": "int8", "I16": "int16", "U16": "uint16",
    "F16": "float16", "BF16": "bfloat16", "I32": "int32", "U32": "uint32", "F32": "float32",
    "I64": "int64", "U64": "uint64", "F64": "float64", "C64": "complex64",
    "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2", "F8_E4M3FNUZ": "float8_e4m3fnuz",
    "F8_E5M2FNUZ": "float8_e5m2fnuz", "F8_E8M0": "float8_e8m0fnu",
}


def write_safetensors(tensors: dict[str, PareTensor], out, metadata: dict | None) -> None:
    """Write decoded tensors, same dtypes and bytes, with the `safetensors` package."""
    from safetensors import TensorSpec, serialize_file

    keep, specs = [], {}
    for name, t in tensors.items():
        spec_dtype = _SPEC_DTYPES.get(t.dtype)
        if spec_dtype is None:
            raise PareFormatError(f"tensor {name!r}: the safetensors package cannot write dtype {t.dtype}")
        buf = np.frombuffer(t.data, dtype=np.uint8) if t.data else np.zeros(1, dtype=np.uint8)
        keep.append(buf)
        specs[name] = TensorSpec(dtype=spec_dtype, shape=list(t.shape), data_ptr=buf.ctypes.data, data_len=len(t.data))
    serialize_file(specs, str(out), metadata=metadata)
    del keep


# --------------------------------------------------------------------------- CLI


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Read a .pare file or model folder (formats/pare.md, version 1).")
    ap.add_argument("path", help="a .pare file or a model folder (model.pare or shards + model.pare.index.json)")
    ap.add_argument("--verify", action="store_true", help="decode every tensor and check all checksums and padding")
    ap.add_argument("--to-safetensors", metavar="OUT", help="write every tensor to one .safetensors file")
    args = ap.parse_args(argv)
    p = Path(args.path)
    try:
        files = [p] if p.is_file() else pare_files(p)[0]
        pfs = [PareFile(f) for f in files]
        for pf in pfs:
            for t in pf.tensors:
                print(f"{pf.path.name}\t{t.name}\t{t.dtype}\t{t.shape}\t{t.encoding}\t{t.size}\t{t.stored}")
        if args.verify:
            for pf in pfs:
                pf.verify_all()
            print(f"verified {sum(len(pf.tensors) for pf in pfs)} tensors in {len(pfs)} file(s)", file=sys.stderr)
        if args.to_safetensors:
            tensors = {}
            for pf in pfs:
                for name in pf.names():
                    tensors[name] = pf.read(name)
            write_safetensors(tensors, args.to_safetensors, pfs[0].metadata if pfs else None)
    except PareFormatError as e:
        print(f"pare_reader: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
