"""The package's layout rules, checked by walking every module's imports with `ast`:

* the library (minidiff/ minus minidiff/course and minidiff/scripts) never imports the course
  machinery or the command-line scripts;
* no module imports another module's `_private` name;
* the import graph of minidiff has no circle.
"""

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "minidiff"


def module_name(path: Path) -> str:
    parts = path.relative_to(PKG.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path):
    """(imported module, imported names) for every import of minidiff in the file, function bodies included."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name.startswith("minidiff"):
                    yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.startswith("minidiff"):
                names = [a.name for a in node.names]
                if not node.module:  # `from . import x`: each x is a module
                    for n in names:
                        yield f"{target}.{n}", []
                else:
                    yield target, names


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PKG.rglob("*.py")}
    edges = {}
    for mod, path in modules.items():
        deps = set()
        for target, _ in imports(path):
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]  # `from minidiff.x import f` depends on minidiff.x
            if target in modules and target != mod:
                deps.add(target)
        edges[mod] = deps
    return edges


def is_library(mod: str) -> bool:
    return not mod.startswith(("minidiff.course", "minidiff.scripts"))


def test_the_graph_is_not_empty():
    g = graph()
    assert "minidiff.sampling" in g and "minidiff.forward" in g["minidiff.sampling"]


def test_library_never_imports_course_or_scripts():
    bad = [(m, d) for m, deps in graph().items() if is_library(m) for d in deps if not is_library(d)]
    assert not bad, f"library modules import the course machinery or scripts: {bad}"


def test_no_private_names_imported_across_modules():
    bad = []
    for path in PKG.rglob("*.py"):
        for target, names in imports(path):
            bad += [f"{module_name(path)}: from {target} import {n}" for n in names if n.startswith("_")]
    assert not bad, "private names imported from another module:\n" + "\n".join(bad)


def test_no_import_cycles():
    g = graph()
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for d in sorted(g[m]):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(g):
        if m not in state:
            visit(m)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_checker_catches_a_cycle_and_a_private_import(tmp_path, monkeypatch):
    """The rules above can fail: a fake package with a circle and a private import trips both."""
    pkg = tmp_path / "minidiff"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from .b import _helper\n")
    (pkg / "b.py").write_text("from . import a\n_helper = 1\n")
    monkeypatch.setattr(__import__(__name__), "PKG", pkg)
    assert graph()["minidiff.a"] == {"minidiff.b"} and graph()["minidiff.b"] == {"minidiff.a"}
    for rule in (test_no_import_cycles, test_no_private_names_imported_across_modules):
        try:
            rule()
        except AssertionError:
            continue
        raise AssertionError(f"{rule.__name__} missed the planted violation")


# The library's layers, bottom first (the list in minidiff/__init__.py and AUTHORING.md).
LAYERS = ["utils", "paths", "data", "schedules", "forward", "losses", "vpred", "elbo", "embedding", "mlp", "unet", "ema",
          "training", "sampling", "ddim", "score", "langevin", "guidance", "sde", "likelihood", "samplers", "vdm", "flow",
          "inpaint", "editing", "anomaly", "text", "crossattn",
          "autoencoder", "latent", "unet1d", "egnn", "video", "gan", "distill", "superres",
          "checkpoints", "eval", "scripts", "course"]


def layer(mod: str) -> int:
    parts = mod.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 else len(LAYERS)  # the package's __init__ sits on top


def test_arrows_only_go_down_the_layers():
    bad = [f"{m} imports {d}" for m, deps in graph().items() for d in deps if layer(d) > layer(m)]
    assert not bad, "imports that go up the layers:\n" + "\n".join(bad)


def test_every_module_has_a_layer():
    assert all(m == "minidiff" or m.split(".")[1] in LAYERS for m in graph())
