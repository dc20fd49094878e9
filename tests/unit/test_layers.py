"""The package's boxes form one order (DESIGN.md, "Layering and speed"): a module imports only
from boxes below its own, and no modules import each other in a circle. Imports are read
statically, those inside functions and under TYPE_CHECKING included. Entry points (a box's
``cli`` module, ``spark_entry``, ``__main__``, the package's ``__init__``) sit above every box:
they assemble commands and jobs from anything.

There are no exceptions: an upward import or a circle anywhere in the package fails."""
from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "pyspark_theflash"

# lowest first; boxes on one line may not import each other
ORDER = [
    {"errors", "stop_signals", "grpc_fork", "proto", "_native", "processes", "heap", "durable",
     "lazy_exports", "pandas_probe"},  # heap: the cyclic GC's pace; lazy_exports: the packages' names imported
    # when first named; pandas_probe: pyarrow's probe for pandas, answered in the program's own processes
    {"grpc_health"},  # gRPC's health checking protocol, which every gRPC server answers
    {"ports"},  # every server's listening socket (pyspark_theflash/ports.py)
    {"status_http"},  # a long-running process's /metrics, /status and /healthz
    {"codec"}, {"schema"}, {"txn"}, {"binlog"},
    {"upstream_client"},  # the clients of an upstream TiDB cluster (a real one or the mini cluster)
    {"upstream"}, {"capture"},  # beside the binlog: the mini cluster, and capture into the binlog
    {"store"}, {"engine"}, {"latch"}, {"scan"},
    {"lake"},  # the store published as Delta tables (docs/delta.md): reads the store, used by the writer and service
    # the writer applies the binlog through the engine; the service it serves beside itself
    # (--serve) is handed to it by the entry point (writer/cli.py: Writer(serve=...))
    {"writer"}, {"service"}, {"spark"}, {"demo"},
]
RANK = {box: i for i, boxes in enumerate(ORDER) for box in boxes}
ENTRY = len(ORDER)
ENTRY_MODULES = {"cli", "__main__", "spark_entry"}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The package's modules that ``name`` imports (a name imported from a package is its
    submodule when it is one, else the package)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(up + ([node.module] if node.module else []))
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        found.update(t for t in targets if t in modules and t != name)
    return found


def _rank(module: str) -> int:
    parts = module.split(".")
    if len(parts) == 1 or parts[-1] in ENTRY_MODULES:
        return ENTRY
    return RANK.get(parts[1], -1)


def test_every_box_imports_only_from_below() -> None:
    modules = _modules()
    unknown = sorted({m.split(".")[1] for m in modules if _rank(m) < 0})
    assert not unknown, f"boxes not in ORDER (place them in DESIGN.md's order): {unknown}"
    upward = {f"{m} -> {t}" for m, p in modules.items() for t in _imports(m, p, modules)
              if _rank(m) < ENTRY and t.split(".")[:2] != m.split(".")[:2] and _rank(t) >= _rank(m)}
    assert not upward, "imports of a box at or above the importer's:\n" + "\n".join(sorted(upward))


def test_no_modules_import_each_other_in_a_circle() -> None:
    modules = _modules()
    graph = {m: _imports(m, p, modules) for m, p in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[str] = []

    def visit(m: str) -> None:  # Tarjan's strongly connected components
        index[m] = low[m] = len(index)
        stack.append(m)
        for t in graph[m]:
            if t not in index:
                visit(t)
                low[m] = min(low[m], low[t])
            elif t in stack:
                low[m] = min(low[m], index[t])
        if low[m] == index[m]:
            component = []
            while True:
                top = stack.pop()
                component.append(top)
                if top == m:
                    break
            if len(component) > 1:
                circles.append(" <-> ".join(sorted(component)))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    assert not circles, "import circles:\n" + "\n".join(sorted(circles))


def test_only_the_mini_cluster_and_entry_points_import_the_mini_cluster() -> None:
    """The product speaks to an upstream through its clients (``upstream_client``) alone, so
    that what it does against the mini cluster is what it does against a TiDB cluster."""
    modules = _modules()
    inside = {f"{m} -> {t}" for m, p in modules.items() for t in _imports(m, p, modules)
              if t.split(".")[:2] == ["pyspark_theflash", "upstream"] and m.split(".")[:2] != t.split(".")[:2]
              and _rank(m) < ENTRY}
    assert not inside, "imports of the mini cluster from the product:\n" + "\n".join(sorted(inside))
