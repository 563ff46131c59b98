"""The layout holds: which package may import which, read from the source with `ast`.

- `common/` imports no process package (`api`, `gpu_worker`, `io_worker`, `ttsq`);
- `api/` imports neither worker; the two workers never import each other;
- `torch` and the engines are imported only inside `gpu_worker/engines/`;
- the I/O worker's whole import closure holds no engine and no torch;
- no module imports a private name (`_x`) of another module;
- no Redis key is spelled outside `common/keys.py`;
- there is no import circle.

Imports under `if TYPE_CHECKING:` are annotations only and do not count; imports inside a
function do (they run, and a circle hidden in a function is still a circle).
Each rule is also run on a small tree with the fault planted, so a rule that cannot fail fails.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("api", "common", "gpu_worker", "io_worker", "ttsq")
PROCESSES = ("api", "gpu_worker", "io_worker", "ttsq")
#: A Redis key's prefix (`common/keys.py`); spelled anywhere else, a key escapes the one list.
KEY = re.compile(r"^ttsq:[a-z0-9_]")


@dataclass
class Module:
    name: str
    path: Path
    #: (imported module, line) for every import that runs.
    imports: list[tuple[str, int]] = field(default_factory=list)
    #: (module, private name, line) for every `from m import _x` of a project module.
    privates: list[tuple[str, str, int]] = field(default_factory=list)
    #: Lines where a string literal starts with the key prefix.
    keys: list[int] = field(default_factory=list)


def _name_of(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _typing_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk(node: ast.AST) -> Iterator[ast.AST]:
    """Every node, except the bodies of `if TYPE_CHECKING:`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, ast.If) and _typing_only(child):
            yield from (n for c in child.orelse for n in [c, *_walk(c)])
            continue
        yield child
        yield from _walk(child)


#: Underscored by the namedtuple API, public all the same.
NAMEDTUPLE_API = {"_replace", "_asdict", "_fields", "_make"}


def _private_attribute(node: ast.Attribute) -> bool:
    """`other._x`: a private attribute of anything but `self` or `cls`."""
    private = node.attr.startswith("_") and not node.attr.startswith("__")
    if not private or node.attr in NAMEDTUPLE_API or isinstance(node.value, ast.Call):
        return False  # a method of what a call just returned is the caller's own class's
    owner = node.value.id if isinstance(node.value, ast.Name) else None
    return owner not in ("self", "cls", "ctypes")


def read_tree(root: Path) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            module = Module(_name_of(root, path), path)
            modules[module.name] = module
    for module in modules.values():
        tree = ast.parse(module.path.read_text(), str(module.path))
        is_package = module.path.name == "__init__.py"
        for node in _walk(tree):
            if isinstance(node, ast.Import):
                module.imports += [(a.name, node.lineno) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = module.name.split(".")[: len(module.name.split(".")) - node.level]
                    if is_package:
                        up = module.name.split(".")[: len(module.name.split(".")) - node.level + 1]
                    base = ".".join([*up, *([node.module] if node.module else [])])
                module.imports.append((base, node.lineno))
                for alias in node.names:
                    if f"{base}.{alias.name}" in modules:
                        module.imports.append((f"{base}.{alias.name}", node.lineno))
                    elif alias.name.startswith("_") and base.split(".")[0] in PACKAGES:
                        module.privates.append((base, alias.name, node.lineno))
            elif isinstance(node, ast.Attribute) and _private_attribute(node):
                module.privates.append((ast.unparse(node.value), node.attr, node.lineno))
            elif isinstance(node, ast.Constant) and KEY.match(str(node.value)):
                module.keys.append(node.lineno)
    return modules


def _top(name: str) -> str:
    return name.split(".")[0]


#: What any synthesis module may import of `gpu_worker/engines/`: the interface and the loader
#: (which imports an engine only when asked, by name); `cuda` asks torch about the GPU without
#: importing it where it is absent.
ENGINE_FRONT = {"gpu_worker.engines", "gpu_worker.engines.base", "gpu_worker.engines.cuda"}


def _engine(target: str) -> bool:
    inside = target.startswith("gpu_worker.engines.") and target not in ENGINE_FRONT
    return inside or _top(target) in ("torch", "torchaudio", "indextts")


def forbidden_imports(modules: dict[str, Module]) -> list[str]:
    found = []
    for m in modules.values():
        for target, line in m.imports:
            top, where = _top(target), f"{m.path.name}:{line} {m.name} imports {target}"
            if _top(m.name) == "common" and top in PROCESSES:
                found.append(f"{where}: common imports no process package")
            if _top(m.name) == "api" and top in ("gpu_worker", "io_worker"):
                found.append(f"{where}: the API imports no worker")
            if {_top(m.name), top} == {"gpu_worker", "io_worker"}:
                found.append(f"{where}: the workers never import each other")
            if _engine(target) and not m.name.startswith("gpu_worker.engines"):
                found.append(f"{where}: torch and engines only inside gpu_worker/engines/")
    return found


def closure(modules: dict[str, Module], start: str) -> set[str]:
    """Every module (project or not) that importing `start` imports, transitively."""
    seen, todo = {start}, [start]
    while todo:
        for target, _ in modules[todo.pop()].imports:
            names = [target] + [
                p for p in (".".join(target.split(".")[:i]) for i in range(1, 4)) if p in modules
            ]
            for name in names:
                if name not in seen:
                    seen.add(name)
                    if name in modules:
                        todo.append(name)
    return seen


def cycles(modules: dict[str, Module]) -> list[list[str]]:
    """Import circles among project modules (Tarjan's strongly connected components)."""
    graph = {
        name: sorted({t for t, _ in m.imports if t in modules and t != name})
        for name, m in modules.items()
    }
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def private_imports(modules: dict[str, Module]) -> list[str]:
    return [
        f"{m.name}:{line} imports {name} from {source}"
        for m in modules.values()
        for source, name, line in m.privates
        if source != m.name
    ]


def spelled_keys(modules: dict[str, Module]) -> list[str]:
    return [
        f"{m.name}:{line}" for m in modules.values() for line in m.keys if m.name != "common.keys"
    ]


@pytest.fixture(scope="module")
def tree() -> dict[str, Module]:
    return read_tree(REPO)


def test_no_forbidden_import(tree: dict[str, Module]) -> None:
    assert forbidden_imports(tree) == []


def test_the_io_workers_closure_holds_no_engine_and_no_torch(tree: dict[str, Module]) -> None:
    reached = closure(tree, "io_worker.tasks")
    assert "io_worker.sweeper" in reached  # the closure is real: it reaches the sweeper
    assert sorted(n for n in reached if _top(n) in ("gpu_worker", "torch", "indextts")) == []


def test_no_import_circle(tree: dict[str, Module]) -> None:
    assert cycles(tree) == []


def test_no_private_name_is_imported_across_modules(tree: dict[str, Module]) -> None:
    assert private_imports(tree) == []


def test_no_redis_key_is_spelled_outside_the_key_list(tree: dict[str, Module]) -> None:
    assert spelled_keys(tree) == []


def test_no_module_in_common_is_over_300_lines(tree: dict[str, Module]) -> None:
    long = {
        m.name: n
        for m in tree.values()
        if _top(m.name) == "common" and (n := len(m.path.read_text().splitlines())) > 300
    }
    assert long == {}


# -- every rule fails when its fault is planted ------------------------------------------------


def _plant(root: Path, files: dict[str, str]) -> dict[str, Module]:
    for package in PACKAGES:
        (root / package).mkdir(parents=True, exist_ok=True)
        (root / package / "__init__.py").write_text("")
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return read_tree(root)


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"common/x.py": "from api.app import app\n"}, "common imports no process package"),
        ({"api/x.py": "import gpu_worker.tasks\n"}, "the API imports no worker"),
        ({"io_worker/x.py": "from gpu_worker import runtime\n"}, "never import each other"),
        ({"gpu_worker/x.py": "def f():\n    import torch\n"}, "only inside gpu_worker/engines"),
        ({"ttsq/x.py": "from gpu_worker.engines.espeak import E\n"}, "only inside gpu_worker"),
    ],
)
def test_a_planted_forbidden_import_is_found(
    tmp_path: Path, files: dict[str, str], expected: str
) -> None:
    found = forbidden_imports(_plant(tmp_path, files))
    assert len(found) == 1 and expected in found[0]


def test_an_import_for_annotations_only_does_not_count(tmp_path: Path) -> None:
    text = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from api.app import app\n"
    assert forbidden_imports(_plant(tmp_path, {"common/x.py": text})) == []


def test_a_planted_circle_is_found(tmp_path: Path) -> None:
    tree = _plant(
        tmp_path,
        {"common/a.py": "from common import b\n", "common/b.py": "def f():\n    import common.a\n"},
    )
    assert cycles(tree) == [["common.a", "common.b"]]


def test_a_planted_engine_in_the_io_closure_is_found(tmp_path: Path) -> None:
    tree = _plant(
        tmp_path,
        {
            "io_worker/tasks.py": "from common import helper\n",
            "common/helper.py": "import torch\n",
        },
    )
    assert "torch" in closure(tree, "io_worker.tasks")


def test_a_planted_private_import_and_key_are_found(tmp_path: Path) -> None:
    tree = _plant(
        tmp_path,
        {
            "common/a.py": "def _helper(): ...\n",
            "api/b.py": "from common.a import _helper\nKEY = 'ttsq:job:'\n",
            "api/c.py": "from common import a\nx = a._helper()\n",
        },
    )
    assert private_imports(tree) == [
        "api.b:1 imports _helper from common.a",
        "api.c:2 imports _helper from a",
    ]
    assert spelled_keys(tree) == ["api.b:2"]
