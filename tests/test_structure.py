"""The package's shape: no module imports itself back through others."""
import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "denetdm"


def module_name(path: Path) -> str:
    parts = ["denetdm", *path.relative_to(SRC).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, modules: set) -> set:
    """The package's modules that `path` imports anywhere (top level or inside a function)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([base] if base else [])])
            for alias in node.names:
                target = f"{base}.{alias.name}"
                found.add(target if target in modules else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in modules and m != name}


def test_no_import_cycle():
    files = {module_name(p): p for p in SRC.rglob("*.py")}
    graph = {name: imports(path, set(files)) for name, path in files.items()}
    # A package's __init__ importing its own modules is how registration works; only the other
    # direction can close a cycle, so edges into a package from its own modules are not followed.
    graph = {name: {t for t in targets if not name.startswith(t + ".")} for name, targets in graph.items()}
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for name in sorted(graph):
        if name not in state:
            visit(name)


def test_the_cli_starts_without_importing_torch():
    """`denetdm --help` should answer at once, not after torch and torchvision load (seconds on a busy machine)."""
    import subprocess
    import sys

    code = "import sys; from denetdm.cli import build_parser; build_parser(); print('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "False"
