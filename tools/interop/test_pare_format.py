"""The `.pare` checkpoint format (formats/pare.md) end to end, with the real pare binary.

pare writes `.pare` folders (`pare convert IN OUT --format pare`), reads them back
(`--format safetensors`, `validate --verify`, `inspect --json`), and
tools/pare_reader.py, a second reader written from the spec alone, decodes what it wrote.
Until pare supports the format these tests fail (they never skip).
"""

from __future__ import annotations

import json
import random
import re
import shutil
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from conftest import (
    FIXTURE_NAMES,
    FIXTURES,
    INDEX_NAME,
    content_digest,
    convert,
    describe,
    expect_error,
    file_metadata,
    other_files,
    read_tensors,
    run_pare,
    sha256,
    weight_files,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import pare_reader  # noqa: E402
from pare_reader import DTYPE_BITS, PareFile, PareFormatError  # noqa: E402

PARE_INDEX = "model.pare.index.json"
PARE_SINGLE = "model.pare"
PARE_SHARD_RE = re.compile(r"^model-(\d{5})-of-(\d{5})\.pare$")
CHUNK_ELEMENTS = 1 << 20  # "pare cuts chunks of 2^20 elements"
RAW_BELOW = 4096  # "tensors under 4 KiB are raw"
SHARD_LIMIT = "100KB"


def to_pare(src, out, *opts):
    return convert(src, out, "--format", "pare", "--quiet", *opts)


def from_pare(src, out, *opts):
    return convert(src, out, "--format", "safetensors", "--quiet", *opts)


def pare_weight_files(folder) -> list[Path]:
    return sorted(Path(folder).glob("*.pare"))


def pare_other_files(folder) -> list[str]:
    folder = Path(folder)
    return sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix != ".pare" and p.name != PARE_INDEX)


def source_metadata(src) -> dict | None:
    metas = [file_metadata(f) for f in weight_files(src)]
    assert all(m == metas[0] for m in metas), f"fixture {src} has shards with different __metadata__"
    return metas[0]


def assert_pare_listing(src, out):
    """OUT holds the other files of SRC, byte-identical, plus .pare weights; nothing else."""
    names = sorted(p.name for p in Path(out).iterdir())
    assert not [n for n in names if n.endswith(".safetensors") or n == INDEX_NAME], f"safetensors files in {names}"
    assert not [n for n in names if n.startswith(".")], f"hidden files left in output: {names}"
    assert pare_other_files(out) == other_files(src)
    for name in other_files(src):
        assert sha256(Path(out) / name) == sha256(Path(src) / name), f"{name} is not byte-identical"


def assert_tensors_equal(expected: dict, got: dict, what: str):
    """expected: read_tensors() records; got: read_tensors() records or pare_reader tensors."""
    assert list(got) == list(expected), f"{what}: tensor names/order differ"
    for name, a in expected.items():
        b = got[name]
        raw = b.data if isinstance(b, pare_reader.PareTensor) else b.raw()
        assert (b.dtype, list(b.shape)) == (a.dtype, list(a.shape)), f"{what}: {name}: dtype/shape"
        assert raw == a.raw(), f"{what}: {name}: bytes differ"


@pytest.fixture(scope="module")
def pare_outputs(tmp_path_factory):
    """fixture name -> its `--format pare` folder (made once per module; each test that
    uses one checks the convert itself, which asserts success)."""
    made = {}

    def get(fixture):
        if fixture not in made:
            out = tmp_path_factory.mktemp(f"pare-{fixture}") / "out"
            to_pare(FIXTURES / fixture, out)
            made[fixture] = out
        return made[fixture]

    return get


# --------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
def test_pare_output_layout(fixture, pare_outputs):
    src = FIXTURES / fixture
    out = pare_outputs(fixture)
    assert [p.name for p in pare_weight_files(out)] == [PARE_SINGLE]
    assert not (out / PARE_INDEX).exists(), "shard index written for a single-file output"
    assert_pare_listing(src, out)


@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
def test_reader_decodes_pare_output_exactly(fixture, pare_outputs):
    """The independent reader: every rule of the spec holds, and the tensors are the
    fixture's, byte for byte, in the fixture's order, with its __metadata__."""
    src = FIXTURES / fixture
    out = pare_outputs(fixture)
    got = pare_reader.read_folder(out, verify=True)
    assert_tensors_equal(read_tensors(src), got, f"pare_reader on {fixture}")
    pf = PareFile(out / PARE_SINGLE)
    assert pf.metadata == source_metadata(src)
    assert pf.layout_problems() == [], "not the layout formats/pare.md describes"
    for t in pf.tensors:
        assert all(c.elements == CHUNK_ELEMENTS for c in t.chunks[:-1]), f"{t.name}: chunks of 2^20 elements"
        assert all(c.elements <= CHUNK_ELEMENTS for c in t.chunks), t.name


@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
def test_safetensors_pare_safetensors_is_bit_exact(fixture, pare_outputs, tmp_path):
    src = FIXTURES / fixture
    back = tmp_path / "back"
    from_pare(pare_outputs(fixture), back)
    assert [p.name for p in weight_files(back)] == ["model.safetensors"]
    assert not (back / PARE_INDEX).exists() and not pare_weight_files(back)
    assert_tensors_equal(read_tensors(src), read_tensors(back), f"{fixture} via .pare")
    assert file_metadata(back / "model.safetensors") == source_metadata(src)
    # ... and the very files a direct conversion writes.
    direct = tmp_path / "direct"
    convert(src, direct, "--quiet")
    assert content_digest(back) == content_digest(direct)


@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
def test_pare_validate_verify_accepts(fixture, pare_outputs):
    proc = run_pare(["validate", pare_outputs(fixture), "--verify"])
    assert proc.returncode == 0, describe(proc)


@pytest.mark.parametrize("fixture", FIXTURE_NAMES)
def test_inspect_reads_pare(fixture, pare_outputs):
    def inspect(path):
        proc = run_pare(["inspect", path, "--json"])
        assert proc.returncode == 0, describe(proc)
        return json.loads(proc.stdout)

    out = pare_outputs(fixture)
    a, b = inspect(FIXTURES / fixture), inspect(out)
    skip = {"path", "format", "shards", "file_bytes"}
    assert {k: v for k, v in b.items() if k not in skip} == {k: v for k, v in a.items() if k not in skip}
    assert b["format"] == "pare"
    size = (out / PARE_SINGLE).stat().st_size
    assert b["file_bytes"] == size
    assert [(s["file"], s["tensors"], s["bytes"]) for s in b["shards"]] == [(PARE_SINGLE, len(read_tensors(FIXTURES / fixture)), size)]


def test_format_pare_with_dtype(tmp_path):
    """--format pare composes with --dtype: the same tensors as the safetensors cast."""
    src = FIXTURES / "llama-gqa-f32"
    convert(src, tmp_path / "st", "--dtype", "bf16", "--quiet")
    to_pare(src, tmp_path / "pare", "--dtype", "bf16")
    assert_tensors_equal(read_tensors(tmp_path / "st"), pare_reader.read_folder(tmp_path / "pare", verify=True),
                         "--dtype bf16 --format pare")
    assert (tmp_path / "pare" / "config.json").read_bytes() == (tmp_path / "st" / "config.json").read_bytes()


# --------------------------------------------------------------------------- shards


@pytest.mark.parametrize("fixture", ["llama-gqa-f32", "llama-sharded"])
def test_sharded_round_trip(fixture, tmp_path):
    src = FIXTURES / fixture
    out = tmp_path / "pare"
    to_pare(src, out, "--max-shard-size", SHARD_LIMIT)
    assert_pare_listing(src, out)
    shards = [p.name for p in pare_weight_files(out)]
    assert PARE_SINGLE not in shards
    assert len(shards) >= 2, f"expected several shards at {SHARD_LIMIT}, got {shards}"
    nums = [PARE_SHARD_RE.match(s) for s in shards]
    assert all(nums), f"shard names {shards}"
    assert [int(m[1]) for m in nums] == list(range(1, len(shards) + 1))
    assert {int(m[2]) for m in nums} == {len(shards)}

    src_t = read_tensors(src)
    index = json.loads((out / PARE_INDEX).read_text())
    wm = index["weight_map"]
    assert set(wm) == set(src_t)
    order = []
    for s in shards:
        names = PareFile(out / s).names()
        assert names, f"{s} holds no tensor"
        assert {n for n, f in wm.items() if f == s} == set(names), f"{s}: weight_map disagrees with the file"
        order += names
    assert order == list(src_t), "tensor order across shards differs from the input's"
    # ASSUMPTION (spec: "same shape as model.safetensors.index.json"): total_size counts
    # decoded tensor bytes, as in safetensors, not stored bytes.
    assert index["metadata"]["total_size"] == sum(len(r.raw()) for r in src_t.values())

    assert_tensors_equal(src_t, pare_reader.read_folder(out, verify=True), f"pare_reader on sharded {fixture}")
    for s in shards:
        assert PareFile(out / s).layout_problems() == [], s
    proc = run_pare(["validate", out, "--verify"])
    assert proc.returncode == 0, describe(proc)

    back = tmp_path / "back"
    from_pare(out, back)
    assert_tensors_equal(src_t, read_tensors(back), f"sharded {fixture} via .pare")
    assert file_metadata(back / "model.safetensors") == source_metadata(src)
    back_sharded = tmp_path / "back-sharded"
    from_pare(out, back_sharded, "--max-shard-size", SHARD_LIMIT)
    direct = tmp_path / "direct-sharded"
    convert(src, direct, "--max-shard-size", SHARD_LIMIT, "--quiet")
    assert content_digest(back_sharded) == content_digest(direct)


# --------------------------------------------------------------------------- encodings


def expected_encoding(dtype: str, shape: list, data: bytes) -> str:
    """formats/pare.md, "How pare chooses an encoding", for a tensor sparsify did not make."""
    if len(data) < RAW_BELOW:
        return "raw"
    if dtype == "F64":
        return "bytegroup-zstd"
    if dtype not in ("F16", "BF16", "F32"):
        return "raw"
    w = DTYPE_BITS[dtype] // 8
    nz = np.frombuffer(data, dtype=np.uint8).reshape(-1, w).any(axis=1)  # zero = all bits zero
    best, best_bits = "bytegroup-zstd", 8.0 * w
    for m in (4, 8, 16, 2):
        if not shape or shape[-1] % m:
            continue
        n = int(nz.reshape(-1, m).sum(axis=1).max())
        if n >= m:
            continue
        n = max(n, 1)
        bits = n / m * (8 * w + max(1, (m - 1).bit_length()))
        if bits < best_bits:
            best, best_bits = "nm-zstd", bits
    if (~nz).mean() >= 0.30:
        mask_bits = 1 + nz.mean() * 8 * w
        if mask_bits + (0 if best == "bytegroup-zstd" else 0.5) < best_bits:
            best = "bitmask-zstd"
    return best


@pytest.mark.parametrize("fixture, dtype", [("llama-gqa-bf16", "BF16"), ("llama-gqa-f32", "F32")])
def test_float_tensors_are_bytegrouped(fixture, dtype, pare_outputs):
    src_t = read_tensors(FIXTURES / fixture)
    pf = PareFile(pare_outputs(fixture) / PARE_SINGLE)
    w = DTYPE_BITS[dtype] // 8
    got = {t.name: t.encoding for t in pf.tensors}
    want = {n: expected_encoding(r.dtype, r.shape, r.raw()) for n, r in src_t.items()}
    assert got == want
    grouped = [t for t in pf.tensors if t.encoding == "bytegroup-zstd"]
    assert grouped, f"no bytegroup-zstd tensor in {fixture}"
    for t in grouped:
        assert t.dtype == dtype and t.size >= RAW_BELOW
        assert all(len(c.streams) == w for c in t.chunks), t.name
        levels = t.parameters.get("stream_levels")
        if levels is not None:
            assert isinstance(levels, list) and len(levels) == w and all(isinstance(x, int) for x in levels), t.name
    stored, size = sum(t.stored for t in grouped), sum(t.size for t in grouped)
    assert stored < 0.95 * size, f"bytegroup-zstd stored {stored} of {size} bytes: no gain"


# --------------------------------------------------------------------------- corruption


@dataclass
class Region:
    start: int
    end: int
    kind: str  # header | padding | chunk | index | footer
    tensor: str | None = None  # chunk: its tensor; padding: the tensor whose chunk precedes it


def regions(pf: PareFile) -> list[Region]:
    out = [Region(0, pare_reader.HEADER_SIZE, "header")]
    pos, owner = pare_reader.HEADER_SIZE, None
    for t in pf.tensors:
        for c in t.chunks:
            if c.offset > pos:
                out.append(Region(pos, c.offset, "padding", owner))
            out.append(Region(c.offset, c.offset + c.length, "chunk", t.name))
            pos, owner = c.offset + c.length, t.name
    if pf.index_offset > pos:
        out.append(Region(pos, pf.index_offset, "padding", owner))
    out.append(Region(pf.index_offset, pf.index_offset + pf.index_length, "index"))
    out.append(Region(pf.file_size - 32, pf.file_size, "footer"))
    assert sum(r.end - r.start for r in out) == pf.file_size and all(r.end > r.start for r in out)
    return out


def sample_flips(regs: list[Region], seed: int, total: int = 200) -> list[tuple[int, int, Region]]:
    """A deterministic sample of (offset, bit) spread over every kind of region: a fixed
    share for header, footer, index and padding (the header's own padding included), one
    in every chunk, the rest anywhere in chunk data."""
    rng = random.Random(seed)
    picks: dict[int, tuple[int, int, Region]] = {}

    def take(candidates: list[Region], n: int):
        pool = [(r, o) for r in candidates for o in range(r.start, r.end)]
        for r, o in rng.sample(pool, min(n, len(pool))):
            picks.setdefault(o, (o, rng.randrange(8), r))

    by = lambda kind: [r for r in regs if r.kind == kind]  # noqa: E731
    take(by("header"), 12)
    take(by("footer"), 16)
    take(by("index"), 30)
    take([r for r in by("padding") if r.tensor is None], 6)
    take([r for r in by("padding") if r.tensor is not None], 34)
    for r in by("chunk"):
        take([r], 1)
    take(by("chunk"), total - len(picks))
    return sorted(picks.values(), key=lambda p: p[0])


CORRUPT_FIXTURE = "llama-gqa-bf16"


def test_every_flipped_bit_is_caught(pare_outputs, tmp_path):
    clean = pare_outputs(CORRUPT_FIXTURE)
    pf = PareFile(clean / PARE_SINGLE)
    regs = regions(pf)
    flips = sample_flips(regs, seed=20240611)
    kinds = {r.kind for _, _, r in flips}
    assert kinds == {"header", "padding", "chunk", "index", "footer"}, f"sample misses a region kind: {kinds}"

    work = tmp_path / "work"
    problems: list[tuple[str, str]] = []  # (kind of failure, detail)
    for offset, bit, reg in flips:
        if work.exists():
            shutil.rmtree(work)
        work.mkdir()
        bad = work / "in"
        shutil.copytree(clean, bad)
        path = bad / PARE_SINGLE
        data = bytearray(path.read_bytes())
        data[offset] ^= 1 << bit
        path.write_bytes(bytes(data))
        where = f"{reg.kind} {'after the header' if reg.kind == 'padding' and not reg.tensor else ''}".strip()
        what = f"bit {bit} of byte {offset} ({reg.kind}{(' after the chunk of ' if reg.kind == 'padding' else ' of ') + reg.tensor if reg.tensor else ''})"
        # the file is always named; a chunk, or padding after a chunk, also names the tensor
        fragments = [PARE_SINGLE] + ([reg.tensor] if reg.tensor else [])

        for args in (["validate", bad, "--verify"], ["convert", bad, work / "out", "--format", "safetensors", "--quiet"]):
            proc = run_pare(args)
            if proc.returncode == 0:
                problems.append((f"pare {args[0]} accepted damaged {where}", what))
                continue
            try:
                expect_error(proc, 1, *fragments)
            except AssertionError as e:
                problems.append((f"pare {args[0]}: wrong error for damaged {where}", f"{what}: {str(e).splitlines()[0]}: {proc.stderr.strip()[:300]}"))
        leftovers = sorted(p.name for p in work.iterdir())
        if leftovers != ["in"]:
            problems.append((f"pare convert left output behind for damaged {where}", f"{what}: {leftovers}"))

        try:
            PareFile(path).verify_all()
            problems.append((f"pare_reader accepted damaged {where}", what))
        except PareFormatError as e:
            if reg.tensor and f"tensor {reg.tensor!r}" not in str(e):
                problems.append((f"pare_reader did not name the tensor for {where}", f"{what}: {e}"))
    if problems:
        counts = Counter(k for k, _ in problems)
        first = {}
        for k, d in problems:
            first.setdefault(k, d)
        pytest.fail(
            f"{len(problems)} problem(s) over {len(flips)} single-bit flips of {CORRUPT_FIXTURE}/{PARE_SINGLE}:\n"
            + "\n".join(f"  {n:3d} x {k}\n        e.g. {first[k]}" for k, n in counts.most_common()),
            pytrace=False,
        )


# --------------------------------------------------------------------------- sparse tensors


def make_sparse_fixture(dst: Path) -> dict[str, str]:
    """A copy of llama-gqa-f32 whose weights exercise the sparse encodings, negative zeros
    (not zero for .pare) in each: a 2:4 tensor with exactly 2 non-zeros per group; a 2:4
    tensor where some groups have fewer; a 4:8 tensor that is not 2:4; one with 60 % zeros
    in no pattern. Returns {tensor: what was done}."""
    import torch
    from safetensors.torch import save_file

    shutil.copytree(FIXTURES / "llama-gqa-f32", dst)
    src = read_tensors(dst)
    tensors = {n: r.tensor.clone() for n, r in src.items()}
    gen = torch.Generator().manual_seed(20240611)
    done = {}

    def nm(name, n, m, fewer: bool):
        t = tensors[name]
        g = t.reshape(-1, m)
        keep = torch.topk(g.abs() + torch.rand(g.shape, generator=gen), n, dim=1).indices
        mask = torch.zeros_like(g, dtype=torch.bool).scatter_(1, keep, True)
        if fewer:
            sub = mask[::3]
            mask[::3] = sub & (torch.rand(sub.shape, generator=gen) < 0.5)  # some groups keep fewer than n
        out = torch.where(mask, g, torch.zeros_like(g))
        rows = torch.arange(1, g.shape[0], 5)
        out[rows, keep[rows, 0]] = -0.0  # a kept value
        tensors[name] = out.reshape(t.shape).contiguous()
        done[name] = f"{n}:{m}" + (" with fewer non-zeros in some groups" if fewer else "")

    names = [n for n, r in src.items() if r.tensor.dim() == 2 and r.tensor.numel() * 4 >= 4 * RAW_BELOW]
    nm(names[0], 2, 4, fewer=False)
    nm(names[1], 2, 4, fewer=True)
    nm(names[2], 4, 8, fewer=False)
    t = tensors[names[3]].clone()
    t[torch.rand(t.shape, generator=gen) < 0.6] = 0.0
    t.view(-1)[::11] = -0.0
    tensors[names[3]] = t
    done[names[3]] = "60% zeros"
    (dst / "model.safetensors").unlink()
    save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    return done


@pytest.fixture(scope="module")
def sparse_outputs(tmp_path_factory):
    """dtype (None, "bf16", "f16") -> (sparse source, safetensors reference, .pare output)."""
    made = {}

    def get(dtype):
        if dtype not in made:
            base = tmp_path_factory.mktemp(f"sparse-{dtype}")
            src = base / "sparse"
            done = make_sparse_fixture(src)
            cast = ["--dtype", dtype] if dtype else []
            convert(src, base / "ref", "--quiet", *cast)  # pare's safetensors output: the reference
            to_pare(src, base / "pare", *cast)
            made[dtype] = (done, base / "ref", base / "pare")
        return made[dtype]

    return get


@pytest.mark.parametrize("dtype", [None, "bf16", "f16"])
def test_sparse_tensors_round_trip(dtype, sparse_outputs, tmp_path):
    _, ref, out = sparse_outputs(dtype)
    ref_t = read_tensors(ref)
    assert_tensors_equal(ref_t, pare_reader.read_folder(out, verify=True), f"sparse ({dtype or 'no cast'}) .pare")

    pf = PareFile(out / PARE_SINGLE)
    assert pf.layout_problems() == []
    assert {t.encoding for t in pf.tensors} >= {"nm-zstd", "bitmask-zstd", "bytegroup-zstd", "raw"}
    for t in pf.tensors:
        if t.encoding == "nm-zstd":
            assert all(c.elements % t.shape[-1] == 0 for c in t.chunks), f"{t.name}: chunks of whole rows"
        if t.encoding in ("nm-zstd", "bitmask-zstd"):
            assert t.stored < 0.75 * t.size, f"{t.name}: {t.encoding} stored {t.stored} of {t.size} bytes"

    back = tmp_path / "back"
    from_pare(out, back)
    assert content_digest(back) == content_digest(ref)
    proc = run_pare(["validate", out, "--verify"])
    assert proc.returncode == 0, describe(proc)


@pytest.mark.parametrize("dtype", [None, "bf16", "f16"])
def test_sparse_encoding_choice_follows_spec(dtype, sparse_outputs):
    """formats/pare.md, "How pare chooses an encoding": the N:M pattern or bitmask that
    stores the fewest bits, N:M kept unless the mask saves more than half a bit per element."""
    done, ref, out = sparse_outputs(dtype)
    pf = PareFile(out / PARE_SINGLE)
    got = {t.name: t.encoding for t in pf.tensors}
    want = {n: expected_encoding(r.dtype, r.shape, r.raw()) for n, r in read_tensors(ref).items()}
    assert got == want, {n: f"got {got[n]}, spec says {want[n]} ({done.get(n)})" for n in got if got[n] != want[n]}
    for name, what in done.items():
        if "fewer" not in what and ":" in what:  # exact N:M data is stored with its own pattern
            t = next(t for t in pf.tensors if t.name == name)
            assert t.encoding == "nm-zstd" and f"{t.parameters['n']}:{t.parameters['m']}" == what, (name, what, t.encoding)
