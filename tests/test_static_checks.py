"""Static checks over the shipped code (the package, app.py, tools/): nothing unpickles untrusted bytes and nothing
runs code that comes with downloaded weights. Read from the syntax tree, so comments and strings cannot trip it."""

import ast
from pathlib import Path

import pytest

from s3d_pipeline.paths import REPO_ROOT

# Unpickling that is allowed, with the reason. Keys are (file, line text stripped).
TRUSTED_PICKLE_LOADS = {
    # A forked child of the same process hands back its result over a private pipe: the bytes never come from
    # a file or the network.
    ("s3d_pipeline/data/synth/speech.py", "ok, value = pickle.loads(payload)"),
}
PICKLE_MODULES = {"pickle", "cPickle", "_pickle", "dill", "cloudpickle", "joblib", "shelve", "marshal"}


def shipped_sources():
    files = [REPO_ROOT / "app.py", *sorted((REPO_ROOT / "s3d_pipeline").rglob("*.py")), *sorted((REPO_ROOT / "tools").rglob("*.py"))]
    return [f for f in files if f.is_file()]


def _dotted(node) -> str:
    """``a.b.c`` for an attribute chain or name, else ''."""
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return f"{base}.{node.attr}" if base else ""
    return ""


def _keyword_is(call: ast.Call, name: str, value) -> bool:
    return any(k.arg == name and isinstance(k.value, ast.Constant) and k.value.value is value for k in call.keywords)


def findings(path: Path):
    """(line, problem) for every risky call in one file."""
    source = path.read_text(encoding="utf-8")
    lines = source.splitlines()
    relative = path.relative_to(REPO_ROOT).as_posix() if path.is_relative_to(REPO_ROOT) else path.name
    problems = []
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name.endswith("torch.load"):
            if not _keyword_is(node, "weights_only", True):
                problems.append((node.lineno, "torch.load without weights_only=True"))
        module, _, function = name.rpartition(".")
        if module in PICKLE_MODULES and function in ("load", "loads", "Unpickler"):
            if (relative, lines[node.lineno - 1].strip()) not in TRUSTED_PICKLE_LOADS:
                problems.append((node.lineno, f"{name}: unpickling runs code from the data"))
        if _keyword_is(node, "allow_pickle", True):
            problems.append((node.lineno, "allow_pickle=True"))
        if _keyword_is(node, "trust_remote_code", True):
            problems.append((node.lineno, "trust_remote_code=True runs code downloaded with a model"))
        if name.endswith("torch.jit.load") or name.endswith("pd.read_pickle") or name.endswith("pandas.read_pickle"):
            problems.append((node.lineno, f"{name} unpickles"))
    return problems


@pytest.mark.parametrize("path", shipped_sources(), ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_no_unsafe_deserialisation_or_remote_code(path):
    assert findings(path) == []


def test_the_checks_catch_what_they_look_for(tmp_path):
    bad = tmp_path / "probe.py"
    bad.write_text(
        "import pickle, torch\n"
        "torch.load('w.pt')\n"
        "torch.load('w.pt', weights_only=False)\n"
        "pickle.loads(b'')\n"
        "numpy.load('a.npy', allow_pickle=True)\n"
        "AutoModel.from_pretrained('x', trust_remote_code=True)\n"
        "torch.load('w.pt', map_location='cpu', weights_only=True)\n"
    )
    assert [line for line, _ in findings(bad)] == [2, 3, 4, 5, 6]


def test_the_trusted_exceptions_still_exist():
    for relative, line in TRUSTED_PICKLE_LOADS:
        assert line in (REPO_ROOT / relative).read_text(), f"{relative} changed: drop or update its exception"
