"""pare against a corpus of malformed safetensors files (tools/make_malformed.py).

For every malformed file:
  * Python `safetensors` gives the verdict the manifest records (it rejects the file,
    except where `reference_accepts` says it opens it anyway);
  * `pare inspect FILE` exits 1 with exactly one stderr line
    `pare: error: <file>: ... [rule: <expected id>]`, and does not crash;
  * `pare convert FILE OUT` exits 1, leaves no OUT and nothing else beside it, and
    does not modify the input.
For every valid edge file: Python `safetensors` opens it, `pare inspect` exits 0, and
`pare inspect --json --tensors` lists the same names, dtypes and shapes.

Binary: env PARE_BIN (relative = relative to the repo root), else <repo>/.build/debug/pare.
Self-contained: uses nothing from conftest.py.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 60

_spec = importlib.util.spec_from_file_location("make_malformed", REPO / "tools" / "make_malformed.py")
mm = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("make_malformed", mm)  # dataclasses look their module up there
_spec.loader.exec_module(mm)

CASES = mm.cases()
MALFORMED = [c.name for c in CASES if c.section == "malformed"]
AMBIGUOUS = [c.name for c in CASES if c.section == "ambiguous"]
VALID = [c.name for c in CASES if c.section == "valid"]

# Output that means the process crashed instead of reporting an error.
CRASH_MARKERS = [
    "Fatal error",
    "Program crashed",
    "💣",
    "Stack dump",
    "Backtrace",
    "Current stack trace",
    "Segmentation fault",
    "Illegal instruction",
    "Trace/breakpoint trap",
    "Thread 0 crashed",
]


from conftest import _pare_bin  # noqa: E402  (the one place that finds the binary)


@pytest.fixture(scope="session")
def pare() -> Path:
    p = _pare_bin()
    if not (p.is_file() and os.access(p, os.X_OK)):
        pytest.fail(f"pare binary not found or not executable at {p}; run `swift build` in {REPO} "
                    f"or set PARE_BIN", pytrace=False)
    return p


@pytest.fixture(scope="session")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    d = tmp_path_factory.mktemp("malformed")
    mm.write_corpus(d)
    return d, json.loads((d / "manifest.json").read_text(encoding="utf-8"))


class Run:
    def __init__(self, args, proc: subprocess.CompletedProcess):
        self.args = [str(a) for a in args]
        self.code = proc.returncode
        self.out = proc.stdout.decode("utf-8", "replace")
        self.err = proc.stderr.decode("utf-8", "replace")

    def __str__(self) -> str:
        return (f"$ {' '.join(self.args)}\nexit {self.code}\n--- stdout\n{self.out[:4000]}"
                f"\n--- stderr\n{self.err[:4000]}")


def run(pare: Path, *args) -> Run:
    cmd = [pare, *args]
    try:
        proc = subprocess.run([str(a) for a in cmd], capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        pytest.fail(f"timed out after {TIMEOUT}s: {' '.join(map(str, cmd))}", pytrace=False)
    return Run(cmd, proc)


def assert_no_crash(r: Run) -> None:
    assert r.code >= 0, f"killed by signal {-r.code}\n{r}"
    for marker in CRASH_MARKERS:
        assert marker not in r.err and marker not in r.out, f"crash output ({marker!r})\n{r}"


def assert_rule_error(r: Run, file: Path, rules: list[str]) -> str:
    """Exit 1 and exactly one stderr line `pare: error: <file>: ... [rule: <id>]`, id in rules."""
    assert_no_crash(r)
    assert r.code == 1, f"expected exit 1\n{r}"
    assert r.err.endswith("\n") and r.err.count("\n") == 1, f"expected exactly one stderr line\n{r}"
    line = r.err[:-1]
    assert line.startswith("pare: error: "), f"expected 'pare: error: ' prefix\n{r}"
    assert file.name in line, f"error does not name the file {file.name}\n{r}"
    tags = [f"[rule: {rule}]" for rule in rules]
    assert any(line.endswith(t) for t in tags), f"expected the line to end with {' or '.join(tags)}\n{r}"
    return line


def reference_open(path: Path):
    """(names -> (dtype, shape)) as Python safetensors reads them; raises if it rejects."""
    from safetensors import safe_open

    with safe_open(str(path), framework="np") as f:
        out = {}
        for k in f.keys():
            sl = f.get_slice(k)
            out[k] = (sl.get_dtype(), list(sl.get_shape()))
        f.metadata()
        return out


# --------------------------------------------------------------------------- the corpus itself


def test_manifest_matches_corpus(corpus):
    d, m = corpus
    assert m["rules"] == mm.RULES
    assert set(m["malformed"]) == set(MALFORMED)
    assert set(m["ambiguous"]) == set(AMBIGUOUS)
    assert set(m["valid"]) == set(VALID)
    on_disk = {p.name for p in d.iterdir()} - {"manifest.json"}
    assert on_disk == set(MALFORMED) | set(AMBIGUOUS) | set(VALID)
    covered = {e["rule"] for e in m["malformed"].values()}
    assert covered == set(mm.RULES), f"rules without a file: {set(mm.RULES) - covered}"
    for e in m["malformed"].values():
        assert isinstance(e["reference_accepts"], bool)


@pytest.mark.parametrize("name", MALFORMED + AMBIGUOUS)
def test_reference_verdict(corpus, name):
    d, m = corpus
    entry = m["malformed"].get(name) or m["ambiguous"][name]
    path = d / name
    if entry["reference_accepts"]:
        reference_open(path)  # must not raise
    else:
        with pytest.raises(Exception):
            got = reference_open(path)
            print(f"Python safetensors accepted {name}: {got}")


@pytest.mark.parametrize("name", VALID)
def test_reference_accepts_valid(corpus, name):
    d, _ = corpus
    reference_open(d / name)


# --------------------------------------------------------------------------- pare rejects


def _expected_rules(m: dict, name: str) -> list[str]:
    if name in m["malformed"]:
        return [m["malformed"][name]["rule"]]
    return m["ambiguous"][name]["rules"]


@pytest.mark.parametrize("name", MALFORMED + AMBIGUOUS)
def test_inspect_rejects(pare, corpus, name):
    d, m = corpus
    path = d / name
    before = path.read_bytes()
    r = run(pare, "inspect", path)
    assert_rule_error(r, path, _expected_rules(m, name))
    assert path.read_bytes() == before, "pare inspect modified its input"


@pytest.mark.parametrize("name", MALFORMED + AMBIGUOUS)
def test_convert_rejects_and_writes_nothing(pare, corpus, tmp_path, name):
    d, m = corpus
    path = d / name
    before = path.read_bytes()
    corpus_before = sorted(p.name for p in d.iterdir())
    parent = tmp_path / "parent"
    parent.mkdir()
    out = parent / "out"
    r = run(pare, "convert", path, out)
    assert_no_crash(r)
    assert r.code == 1, f"expected exit 1\n{r}"
    assert not out.exists() and not out.is_symlink(), f"{out} exists after a failed convert\n{r}"
    left = sorted(p.name for p in parent.iterdir())
    assert left == [], f"failed convert left {left} in the output's parent\n{r}"
    assert sorted(p.name for p in d.iterdir()) == corpus_before, f"convert left files beside the input\n{r}"
    assert path.read_bytes() == before, "pare convert modified its input"


@pytest.mark.parametrize("name", MALFORMED + AMBIGUOUS)
def test_convert_error_names_rule(pare, corpus, tmp_path, name):
    d, m = corpus
    path = d / name
    r = run(pare, "convert", path, tmp_path / "out")
    assert_rule_error(r, path, _expected_rules(m, name))


# --------------------------------------------------------------------------- pare accepts


def _tensor_table(doc):
    """Find the tensor list in `pare inspect --json --tensors` output: the first "tensors"
    value that is a list of {"name", "dtype", "shape"} objects or a {name: {"dtype", "shape"}}
    object. Returns {name: (dtype, shape)} or None."""

    def table(v):
        if isinstance(v, list) and all(isinstance(t, dict) and {"name", "dtype", "shape"} <= t.keys() for t in v):
            names = [t["name"] for t in v]
            assert len(names) == len(set(names)), f"a tensor is listed twice: {names}"
            return {t["name"]: (t["dtype"], list(t["shape"])) for t in v}
        if isinstance(v, dict) and all(isinstance(t, dict) and {"dtype", "shape"} <= t.keys() for t in v.values()):
            return {k: (t["dtype"], list(t["shape"])) for k, t in v.items()}
        return None

    stack = [doc]
    while stack:
        x = stack.pop(0)
        if isinstance(x, dict):
            if "tensors" in x:
                t = table(x["tensors"])
                if t is not None:
                    return t
            stack.extend(x.values())
        elif isinstance(x, list):
            stack.extend(x)
    return None


@pytest.mark.parametrize("name", VALID)
def test_inspect_accepts_valid(pare, corpus, name):
    d, _ = corpus
    path = d / name
    r = run(pare, "inspect", path)
    assert_no_crash(r)
    assert r.code == 0, f"pare rejected a file Python safetensors reads\n{r}"


@pytest.mark.parametrize("name", VALID)
def test_inspect_json_agrees_with_reference(pare, corpus, name):
    d, _ = corpus
    path = d / name
    r = run(pare, "inspect", path, "--json", "--tensors")
    assert_no_crash(r)
    assert r.code == 0, f"pare rejected a file Python safetensors reads\n{r}"
    try:
        doc = json.loads(r.out)
    except ValueError as e:
        pytest.fail(f"stdout is not JSON ({e})\n{r}")
    got = _tensor_table(doc)
    assert got is not None, f"no tensor list found in the JSON output\n{r}"
    want = reference_open(path)
    assert sorted(got) == sorted(want), f"tensor names differ: pare {sorted(got)}, safetensors {sorted(want)}"
    diff = {k: (got[k], want[k]) for k in want if got[k] != want[k]}
    assert not diff, f"(dtype, shape) differ as (pare, safetensors): {diff}"


def _raw_tensors(path: Path) -> dict:
    """{name: (dtype, shape, bytes)} straight from a (valid, duplicate-free) file's header."""
    blob = path.read_bytes()
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    base = 8 + n
    return {
        k: (v["dtype"], v["shape"], blob[base + v["data_offsets"][0] : base + v["data_offsets"][1]])
        for k, v in header.items()
        if k != "__metadata__"
    }


@pytest.mark.parametrize("name", VALID)
def test_convert_valid_keeps_every_tensor(pare, corpus, tmp_path, name):
    """A valid edge file converts (no options: dtypes kept) to files Python safetensors
    opens, holding the same names, dtypes, shapes and bytes."""
    d, _ = corpus
    path = d / name
    before = path.read_bytes()
    out = tmp_path / "out"
    r = run(pare, "convert", path, out)
    assert_no_crash(r)
    assert r.code == 0, f"pare convert failed on a file Python safetensors reads\n{r}"
    assert path.read_bytes() == before, "pare convert modified its input"
    files = sorted(out.rglob("*.safetensors")) if out.is_dir() else [out]
    assert files, f"no .safetensors written under {out}\n{r}"
    got_meta, got_raw = {}, {}
    for f in files:
        got_meta.update(reference_open(f))
        got_raw.update(_raw_tensors(f))
    want = _raw_tensors(path)
    assert got_meta == {k: (v[0], v[1]) for k, v in want.items()}
    assert got_raw == want
