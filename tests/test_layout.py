"""The package's shape, checked from the source: layers import only downwards, no import circles, short
modules, no function-level imports of the package's own modules, no sys.path edits, the public API."""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "fermm"
# layer of each part of the package: a module may import its own layer or a lower one, never a higher one
LAYERS = {"paths": 0, "labels": 0, "hub": 0, "transforms": 0, "framing": 0, "yunet": 0, "onnx_session": 0, "faces": 0,
          "data": 1, "models": 1, "cli": 1, "evaluation": 2, "serve": 3, "training": 3, "studies": 3, "__main__": 4}
SCRIPTS = [p for d in ("train", "eval", "bench", "spaces") for p in (ROOT / d).glob("*.py")] + [ROOT / "app.py"]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imports(path: Path, known: set[str]) -> list[tuple[str, bool]]:
    """(imported fermm module, inside a function?) for every import statement in ``path``."""
    tree = ast.parse(path.read_text())
    nested = {id(n) for f in ast.walk(tree) if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))
              for n in ast.walk(f) if n is not f}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out += [(n, id(node) in nested) for n in names if n in known]
    return out


def graph() -> dict[str, set[str]]:
    mods = modules()
    return {m: {n for n, _ in imports(p, set(mods)) if n != m} for m, p in mods.items()}


def layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 else None


def test_the_import_graph_is_acyclic():
    g = graph()
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(m: str, path: list[str]) -> None:
        state[m] = 1
        for n in sorted(g[m]):
            if state.get(n) == 1:
                pytest.fail("import circle: " + " -> ".join(path[path.index(n):] + [n]))
            if n not in state:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m, [m])


def test_layers_import_only_downwards():
    g = graph()
    assert all(layer(m) is not None for m in g if m != "fermm"), [m for m in g if m != "fermm" and layer(m) is None]
    upward = [f"{m} -> {n}" for m, targets in g.items() for n in targets
              if layer(m) is not None and layer(n) is not None and layer(n) > layer(m)]
    assert upward == []


def test_no_module_is_longer_than_400_lines():
    long = {m: n for m, p in modules().items() if (n := len(p.read_text().splitlines())) > 400}
    assert long == {}


def test_the_package_is_imported_at_module_level_only():
    """Function-level imports are kept for heavy third-party libraries only, each marked as such."""
    mods = modules()
    inner = [f"{m} imports {n}" for m, p in mods.items() for n, nested in imports(p, set(mods)) if nested]
    assert inner == []
    for p in PACKAGE.rglob("*.py"):
        lines = p.read_text().splitlines()
        tree = ast.parse(p.read_text())
        for f in ast.walk(tree):
            if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for n in ast.walk(f):
                    if isinstance(n, (ast.Import, ast.ImportFrom)) and (getattr(n, "level", 0) == 0):
                        top = (n.module if isinstance(n, ast.ImportFrom) else n.names[0].name).split(".")[0]
                        assert top not in sys.stdlib_module_names, f"{p.name}:{n.lineno} imports {top} lazily"
                        assert "# lazy" in lines[n.lineno - 1] or "# lazy" in lines[n.end_lineno - 1], \
                            f"{p.name}:{n.lineno}: a function-level import without a '# lazy: ...' reason"


def test_no_script_edits_sys_path():
    edits = [str(p.relative_to(ROOT)) for p in [*SCRIPTS, *PACKAGE.rglob("*.py"), *(ROOT / "tests").glob("*.py")]
             if "sys.path.insert" in p.read_text() or "sys.path.append" in p.read_text()]
    assert edits == ["tests/test_layout.py"]  # this file's own search string


def test_the_public_api():
    import fermm

    assert {"load_model", "list_models", "load_image", "find_and_crop", "predict_image"} <= set(fermm.__all__)
    assert "glove_cnn" in fermm.list_models() and callable(fermm.load_model) and callable(fermm.predict_image)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        fermm.nope  # noqa: B018
