"""The package's imports form layers and only go down (docs/architecture.md): no circle, no import from
a lower layer to a higher one, imports inside functions included (a lazy import still ties two modules).

The graph is read from the source with ``ast``, nothing is imported, so an import-order bug cannot hide
behind whichever module happened to load first.
"""
import ast
from pathlib import Path

import pytest

import deeplab_gluon

PACKAGE = "deeplab_gluon"
ROOT = Path(deeplab_gluon.__file__).resolve().parent

# The layers, bottom (0) up. A module belongs to the layer of its longest listed prefix. A module may
# import from its own layer or lower ones, never higher, and never in a circle.
LAYERS = {
    # 0 runtime: the leaf errors, flag declaration, config files, devices and CPU threads
    "deeplab_gluon.errors": 0, "deeplab_gluon.flags": 0, "deeplab_gluon.devices": 0,
    "deeplab_gluon.cpu_threads": 0, "deeplab_gluon.config_file": 0,
    # 1 models and data
    "deeplab_gluon.models": 1, "deeplab_gluon.data": 1,
    # 2 checkpoints, the training engine, evaluation and serving
    "deeplab_gluon.checkpoint": 2, "deeplab_gluon.loss": 2, "deeplab_gluon.metrics": 2,
    "deeplab_gluon.runlog": 2, "deeplab_gluon.run_lock": 2, "deeplab_gluon.trainer": 2,
    "deeplab_gluon.inference": 2, "deeplab_gluon.precision": 2, "deeplab_gluon.static_shapes": 2,
    "deeplab_gluon.onnx_ops": 2, "deeplab_gluon.visualize": 2, "deeplab_gluon.report": 2,
    # 3 commands, their shared flag machinery, and the package's public face
    "deeplab_gluon": 3, "deeplab_gluon.cli": 3, "deeplab_gluon.train": 3, "deeplab_gluon.evaluate": 3,
    "deeplab_gluon.predict": 3, "deeplab_gluon.export": 3, "deeplab_gluon.convert_gluoncv": 3,
    "deeplab_gluon.compare": 3,
}
LAYER_NAMES = ("runtime", "models and data", "engine, evaluation, serving", "commands")


def module_name(path: Path) -> str:
    parts = (PACKAGE,) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def package_modules():
    """Module name -> (source path, is a package)."""
    return {module_name(path): (path, path.name == "__init__.py") for path in sorted(ROOT.rglob("*.py"))}


def imports_of(name: str, path: Path, is_package: bool, modules) -> set:
    """The package's modules that ``name`` imports anywhere in its source (module level, in functions,
    relative or absolute); ``from X import y`` counts X and, where y is a module, X.y."""
    here = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            targets = [source] + [f"{source}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            # ``import a.b.c`` also loads a.b: count the deepest module of the package it names
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def import_graph():
    modules = package_modules()
    return {name: imports_of(name, path, is_package, modules) for name, (path, is_package) in modules.items()}


def layer_of(name: str) -> int:
    prefixes = [prefix for prefix in LAYERS if name == prefix or name.startswith(prefix + ".")]
    if not prefixes:
        raise KeyError(name)
    return LAYERS[max(prefixes, key=len)]


def find_cycle(graph):
    """One circle of imports as a list of module names (first == last), or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_the_walk_reads_lazy_and_relative_imports():
    """The walk itself: a known lazy import (train -> trainer, in main()) and a relative import three
    levels up (models.backbones.base -> errors) are seen, and stdlib/mxnet imports are not nodes."""
    graph = import_graph()
    assert "deeplab_gluon.trainer" in graph["deeplab_gluon.train"]
    assert "deeplab_gluon.errors" in graph["deeplab_gluon.models.backbones.base"]
    assert all(target.startswith(PACKAGE) for targets in graph.values() for target in targets)


def test_find_cycle_names_the_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert find_cycle(graph) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_every_module_has_a_layer():
    unplaced = sorted(name for name in import_graph() if not any(
        name == prefix or name.startswith(prefix + ".") for prefix in LAYERS))
    assert not unplaced, f"modules without a layer in LAYERS (add them, see docs/architecture.md): {unplaced}"


def test_no_import_circle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import circle: " + " -> ".join(cycle)


def test_imports_only_go_down():
    upward = [f"{name} ({LAYER_NAMES[layer_of(name)]}) imports {target} ({LAYER_NAMES[layer_of(target)]})"
              for name, targets in sorted(import_graph().items()) for target in sorted(targets)
              if layer_of(target) > layer_of(name)]
    assert not upward, "imports from a lower layer to a higher one:\n" + "\n".join(upward)


@pytest.mark.parametrize("leaf", ["deeplab_gluon.errors", "deeplab_gluon.flags", "deeplab_gluon.config_file"])
def test_leaf_modules_import_nothing_from_the_package(leaf):
    assert import_graph()[leaf] == set()
