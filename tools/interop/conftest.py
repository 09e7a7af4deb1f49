"""Shared helpers for the pare interop suite.

The suite runs the real `pare` binary and checks its output with the real
consumers (Python `safetensors`, `torch`, `transformers`), pinned in
tools/requirements.txt.

Binary: env PARE_BIN, default <repo>/.build/debug/pare (a relative PARE_BIN is
taken relative to the repo root). A missing binary fails every test with a
message saying how to build it; it never skips.

Helpers other test files can import (`from conftest import ...`):
  run_pare(args)               -> CompletedProcess (text mode, never raises on exit code)
  convert(src, out, *opts)     -> runs `pare convert`, asserts exit 0 and that src is untouched
  expect_error(proc, code)     -> asserts exit code and the one-line `pare: error:` contract
  tree_digest(path)            -> {relpath: (size, sha256, mtime_ns)} of every file under path
  read_tensors(folder)         -> ordered {name: TensorRecord} of every tensor in the folder
  weight_files(folder)         -> ordered list of the .safetensors files a folder holds
  FIXTURES, FIXTURE_NAMES      -> Tests/Fixtures/models and its sub-folder names
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

# Never touch the network: everything is loaded from local folders.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import pytest  # noqa: E402
import torch  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
FIXTURES = REPO_ROOT / "Tests" / "Fixtures" / "models"
FIXTURE_NAMES = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir()) if FIXTURES.is_dir() else []

INDEX_NAME = "model.safetensors.index.json"
SHARD_RE = re.compile(r"^model-(\d{5})-of-(\d{5})\.safetensors$")

# pare's --dtype spelling -> torch dtype / safetensors dtype / config.json spelling
TORCH_DTYPES = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
ST_DTYPES = {"f32": "F32", "f16": "F16", "bf16": "BF16"}
CONFIG_DTYPES = {"f32": "float32", "f16": "float16", "bf16": "bfloat16"}
FLOAT_ST_DTYPES = {"F32", "F16", "BF16"}

PARE_TIMEOUT = 120


def _pare_bin() -> Path:
    env = os.environ.get("PARE_BIN")
    if env:
        p = Path(env)
        return p if p.is_absolute() else REPO_ROOT / p
    return REPO_ROOT / ".build" / "debug" / "pare"


PARE_BIN = _pare_bin()


@pytest.fixture(scope="session", autouse=True)
def _require_pare_binary():
    if not (PARE_BIN.is_file() and os.access(PARE_BIN, os.X_OK)):
        pytest.fail(
            f"pare binary not found or not executable at {PARE_BIN}. "
            f"Build it with `swift build` in {REPO_ROOT}, or set PARE_BIN.",
            pytrace=False,
        )
    if not FIXTURE_NAMES:
        pytest.fail(f"no fixtures under {FIXTURES}; run tools/make_fixtures.py", pytrace=False)


# --------------------------------------------------------------------------- running pare


def run_pare(args, *, timeout: float = PARE_TIMEOUT, cwd=None) -> subprocess.CompletedProcess:
    """Run pare with `args` (any path-likes are stringified). Never raises on exit code."""
    cmd = [str(PARE_BIN), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd)


def describe(proc: subprocess.CompletedProcess) -> str:
    return f"$ {' '.join(proc.args)}\nexit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def convert(src, out, *opts) -> subprocess.CompletedProcess:
    """`pare convert src out opts...`; asserts success and that src was not modified."""
    before = tree_digest(src)
    proc = run_pare(["convert", src, out, *opts])
    after = tree_digest(src)
    assert after == before, f"input {src} was modified by pare convert"
    assert proc.returncode == 0, describe(proc)
    return proc


def expect_error(proc: subprocess.CompletedProcess, code: int = 1, *fragments: str) -> str:
    """Assert a failed run: exit `code`; for exit 1, stderr is exactly one line
    `pare: error: ...`. Each fragment must occur in that message. Returns stderr."""
    assert proc.returncode == code, describe(proc)
    err = proc.stderr
    if code == 1:
        lines = err.strip("\n").split("\n")
        assert len(lines) == 1 and lines[0].startswith("pare: error: "), (
            "expected exactly one stderr line starting with 'pare: error: '\n" + describe(proc)
        )
    else:
        assert err.strip(), "expected a message on stderr\n" + describe(proc)
    for frag in fragments:
        assert frag in err, f"expected {frag!r} in stderr\n" + describe(proc)
    return err


# --------------------------------------------------------------------------- files


def tree_digest(path) -> dict:
    """{relative path: (size, sha256, mtime_ns)} for every file (or symlink) under path."""
    path = Path(path)
    if path.is_file():
        st = path.stat()
        return {".": (st.st_size, hashlib.sha256(path.read_bytes()).hexdigest(), st.st_mtime_ns)}
    out = {}
    for p in sorted(path.rglob("*")):
        rel = p.relative_to(path).as_posix()
        if p.is_symlink():
            out[rel] = ("symlink", os.readlink(p))
        elif p.is_file():
            st = p.stat()
            out[rel] = (st.st_size, hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mtime_ns)
        elif p.is_dir():
            out[rel] = ("dir",)
    return out


def content_digest(path) -> dict:
    """Like tree_digest but content only (no mtimes): for comparing two outputs."""
    return {k: v[:2] for k, v in tree_digest(path).items()}


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def weight_files(folder) -> list[Path]:
    """The safetensors files of a model folder, in shard order."""
    return sorted(Path(folder).glob("*.safetensors"))


def other_files(folder) -> list[str]:
    """Names of the files in a model folder that are not weights or the shard index."""
    folder = Path(folder)
    return sorted(
        p.name for p in folder.iterdir() if p.is_file() and not p.name.endswith(".safetensors") and p.name != INDEX_NAME
    )


def read_header(path) -> tuple[dict, list[str], int]:
    """Raw safetensors header: (header dict, tensor names in header order, data start offset)."""
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        raw = f.read(n)
    header = json.loads(raw, object_pairs_hook=lambda kv: dict(kv))
    names = [k for k in header if k != "__metadata__"]
    return header, names, 8 + n


def file_order(path) -> list[str]:
    """Tensor names of one file in data order (by start offset)."""
    header, names, _ = read_header(path)
    return sorted(names, key=lambda k: header[k]["data_offsets"][0])


@dataclass
class TensorRecord:
    name: str
    dtype: str  # safetensors spelling, e.g. "BF16"
    shape: list
    file: str  # basename
    tensor: torch.Tensor

    def raw(self) -> bytes:
        t = self.tensor.contiguous().reshape(-1)
        return t.view(torch.uint8).numpy().tobytes() if t.numel() else b""


def read_tensors(folder_or_file) -> dict[str, TensorRecord]:
    """Every tensor of a folder (all *.safetensors files, shard order) or of a single file,
    read through `safetensors.safe_open`. Order = file order, then data order in the file."""
    from safetensors import safe_open

    p = Path(folder_or_file)
    files = [p] if p.is_file() else weight_files(p)
    out: dict[str, TensorRecord] = {}
    for f in files:
        with safe_open(str(f), framework="pt") as st:
            keys = set(st.keys())
            order = file_order(f)
            assert set(order) == keys, f"{f}: raw header and safe_open disagree"
            for k in order:
                sl = st.get_slice(k)
                assert k not in out, f"tensor {k} appears in more than one file"
                out[k] = TensorRecord(k, sl.get_dtype(), list(sl.get_shape()), f.name, st.get_tensor(k))
    return out


def file_metadata(path) -> dict | None:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as st:
        return st.metadata()


# --------------------------------------------------------------------------- casting


def bits(t: torch.Tensor) -> torch.Tensor:
    """Integer view of a float tensor's bit patterns (same element size)."""
    int_of = {torch.float32: torch.int32, torch.float16: torch.int16, torch.bfloat16: torch.int16}
    return t.contiguous().view(int_of[t.dtype])


def assert_cast_exact(src: torch.Tensor, got: torch.Tensor, dtype: torch.dtype, what: str = "") -> None:
    """got must equal torch's src.to(dtype): bit-exact for every non-NaN input,
    NaN for every NaN input. A same-dtype "cast" must keep every bit, NaNs included."""
    assert got.dtype == dtype, f"{what}: dtype {got.dtype}, expected {dtype}"
    assert list(got.shape) == list(src.shape), f"{what}: shape {list(got.shape)} != {list(src.shape)}"
    if src.dtype == dtype:
        assert torch.equal(bits(got), bits(src)), f"{what}: same-dtype conversion changed bits"
        return
    expected = src.to(dtype)
    src_nan = torch.isnan(src.float()).reshape(-1)
    got_nan = torch.isnan(got.float()).reshape(-1)
    gb, eb, sb = bits(got).reshape(-1), bits(expected).reshape(-1), bits(src).reshape(-1)
    bad_nan = torch.nonzero(src_nan & ~got_nan).reshape(-1)
    assert bad_nan.numel() == 0, (
        f"{what}: {bad_nan.numel()} NaN inputs did not stay NaN, e.g. input bits "
        + ", ".join(_hex(sb[i], src.dtype) + " -> " + _hex(gb[i], dtype) for i in bad_nan[:8].tolist())
    )
    mismatch = torch.nonzero(~src_nan & (gb != eb)).reshape(-1)
    assert mismatch.numel() == 0, (
        f"{what}: {mismatch.numel()} of {src.numel()} values differ from torch's .to({dtype}), e.g. "
        + ", ".join(
            f"{_hex(sb[i], src.dtype)} -> got {_hex(gb[i], dtype)} want {_hex(eb[i], dtype)}"
            for i in mismatch[:8].tolist()
        )
    )


def _hex(v: torch.Tensor | int, dtype: torch.dtype) -> str:
    width = 8 if dtype == torch.float32 else 4
    mask = (1 << (4 * width)) - 1
    return f"0x{int(v) & mask:0{width}x}"


# --------------------------------------------------------------------------- transformers


def load_config(folder):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(str(folder))


def load_model(folder, dtype: torch.dtype | None = None):
    """from_pretrained through the Auto class that matches config.architectures.
    Asserts that no weight was missing, unexpected or mismatched."""
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    arch = json.loads((Path(folder) / "config.json").read_text())["architectures"][0]
    auto = None
    for suffix, cls in [
        ("ForCausalLM", transformers.AutoModelForCausalLM),
        ("LMHeadModel", transformers.AutoModelForCausalLM),
        ("ForMaskedLM", transformers.AutoModelForMaskedLM),
        ("Model", transformers.AutoModel),
    ]:
        if arch.endswith(suffix):
            auto = cls
            break
    assert auto is not None, f"no Auto class for {arch}"
    kwargs = {"output_loading_info": True}
    if dtype is not None:
        kwargs["dtype"] = dtype
    model, info = auto.from_pretrained(str(folder), **kwargs)
    assert type(model).__name__ == arch, f"loaded {type(model).__name__}, config says {arch}"
    problems = {k: v for k, v in info.items() if v}
    assert not problems, f"transformers reported loading problems for {folder}: {problems}"
    model.eval()
    return model


def model_inputs(config) -> dict:
    gen = torch.Generator().manual_seed(1234)
    ids = torch.randint(3, config.vocab_size, (2, 12), generator=gen)
    inputs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    return inputs


@torch.no_grad()
def forward(model) -> tuple[torch.Tensor, torch.Tensor]:
    """(logits, last hidden state) on a fixed input."""
    out = model(**model_inputs(model.config), output_hidden_states=True)
    return out.logits, out.hidden_states[-1]


@functools.lru_cache(maxsize=None)
def reference_outputs(fixture: str, dtype: str | None = None, mode: str = "load") -> tuple[torch.Tensor, torch.Tensor]:
    """Outputs of an original fixture. mode "load": from_pretrained(fixture, dtype=...);
    mode "to": from_pretrained(fixture) then .to(dtype)."""
    folder = FIXTURES / fixture
    if mode == "load":
        model = load_model(folder, TORCH_DTYPES[dtype] if dtype else None)
    else:
        model = load_model(folder).to(TORCH_DTYPES[dtype])
    return forward(model)
