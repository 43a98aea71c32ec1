"""Data flows one way: frontends -> ir -> passes -> codegen -> runtime.

`ir` imports no other layer; frontends, passes, codegen and runtime each
import `ir` (and the shared leaf modules) and none of the others; only the
top-level package (lazily), the loader, the compile driver and the command
line wire layers together. `serve` comes after the runtime and imports only it and `ir`:
serving an engine needs no compiler.
"""

import ast
import subprocess
import sys
from pathlib import Path

import ember

ROOT = Path(ember.__file__).parent
LAYERS = ("ir", "frontends", "passes", "codegen", "runtime")
LEAVES = {"errors", "tolerance", "version"}  # import nothing of Ember but each other
SERVING = "serve"  # after the runtime: serves engines, so it imports the runtime and ir (and itself) only
WIRING = {"__init__", "__main__", "loader", "build", "cli", "compare", "bench", "tune", "plugins"}


def ember_imports(path: Path) -> set[str]:
    """The `ember.*` modules a file imports (relative imports resolved)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    rel = path.relative_to(ROOT).with_suffix("")
    package = ["ember", *rel.parts[:-1]] if rel.name != "__init__" else ["ember", *rel.parts[:-1]]
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.split(".")[0] == "ember")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[:len(package) - node.level + 1]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            if name.split(".")[0] == "ember":
                out.add(name)
                out.update(f"{name}.{a.name}" for a in node.names)
    return out


def owner(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def package_files():
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("tests", "benchmarks", "examples", "scripts", "build", "docs") or "venv" in rel.parts[0]:
            continue
        yield path, rel


def test_layers_import_only_what_they_may():
    problems = []
    for path, rel in package_files():
        top = rel.parts[0] if len(rel.parts) > 1 else rel.stem
        if top in WIRING:
            continue
        for imported in ember_imports(path):
            target = owner(imported)
            if target is None or target in LEAVES:
                continue
            if top in LEAVES and target != top:
                problems.append(f"{rel}: leaf module imports {imported}")
            elif top == "ir" and target != "ir":
                problems.append(f"{rel}: ir imports {imported}")
            elif top == SERVING:
                if target not in ("runtime", "ir", SERVING):
                    problems.append(f"{rel}: serve imports {imported}; it may import only the runtime and ir")
            elif top in LAYERS and target not in ("ir", top):
                problems.append(f"{rel}: {top} imports {imported}")
            elif top not in LAYERS and top not in LEAVES:
                problems.append(f"{rel}: module outside the layers imports {imported}; add it to a layer")
    assert not problems, "\n".join(problems)


def test_import_ember_is_lazy_and_runtime_stands_alone():
    code = (
        "import sys, ember\n"
        "assert 'ember.ir' not in sys.modules, 'import ember loaded ember.ir'\n"
        "import ember.runtime\n"
        "bad = [m for m in sys.modules if m.split('.')[:2] in (['ember', 'frontends'], ['ember', 'passes'],"
        " ['ember', 'codegen']) or m == 'onnx' or m.startswith('onnx.')]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def test_ir_alone_pulls_in_no_other_layer():
    code = (
        "import sys, ember.ir\n"
        "from ember import ir\n"
        "bad = [m for m in sys.modules if m.startswith('ember.') and m.split('.')[1] in "
        "('frontends', 'passes', 'codegen', 'runtime')]\n"
        "assert not bad, bad\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr


def _layer_files(layer: str):
    for path, rel in package_files():
        if rel.parts[0] == layer:
            yield path, rel


def test_layers_read_no_environment_variables():
    """Environment variables are read at the edges (the command line, scripts, the tests'
    conftest), so an engine behaves the same in every process that loads it."""
    edges = {"codegen/nvrtc_worker.py"}  # a process of its own (its main re-executes itself once)
    problems = []
    for layer in LAYERS:
        for path, rel in _layer_files(layer):
            if rel.as_posix() in edges:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            for node in ast.walk(tree):
                if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv") and \
                        isinstance(node.value, ast.Name) and node.value.id == "os":
                    problems.append(f"{rel}:{node.lineno}: os.{node.attr}")
    assert not problems, "\n".join(problems)


def test_the_runtime_below_its_facade_does_not_import_the_facade():
    """runtime/engine.py is the facade (Engine); the modules it uses (cuda, host, binding,
    validate, specs, memory_plan, engine_format, dlpack) never import it back, and no layer
    imports the package's front door (`import ember`) for anything."""
    problems = []
    for layer in LAYERS:
        for path, rel in _layer_files(layer):
            imported = ember_imports(path)
            if "ember" in imported:
                problems.append(f"{rel}: imports the package itself (`import ember`)")
            if layer == "runtime" and rel.stem not in ("engine", "__init__") and \
                    any(m == "ember.runtime.engine" or m.startswith("ember.runtime.engine.") for m in imported):
                problems.append(f"{rel}: imports the facade ember.runtime.engine")
    assert not problems, "\n".join(problems)


# The program's JSON keys that nothing else of codegen or the runtime uses as a key ("value" and
# "scratch" are also keys of the memory plan's and the io section's own JSON).
PROGRAM_KEYS = {"kind", "kernel", "grid", "block", "shared", "args", "reads", "writes", "steps", "values", "tactic",
                "candidates", "alias", "meta", "i64", "i32", "f32"}


def _attributes(node: ast.AST) -> bool:
    """`op.attributes`: an IR op's attributes, whose names ("kind", "steps") are not the program's."""
    return isinstance(node, ast.Attribute) and node.attr == "attributes"


def _program_dict_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """Where a file reads a program's JSON form: `x["steps"]`, `s.get("kind")`, `"meta" in arg`."""
    found = []
    for node in ast.walk(tree):
        key = None
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and not _attributes(node.value):
            key = node.slice.value
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" \
                and node.args and isinstance(node.args[0], ast.Constant) and not _attributes(node.func.value):
            key = node.args[0].value
        elif isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) and \
                any(isinstance(op, (ast.In, ast.NotIn)) for op in node.ops):
            key = node.left.value
        if isinstance(key, str) and key in PROGRAM_KEYS:
            found.append((node.lineno, key))
    return found


def test_codegen_and_runtime_pass_the_program_typed():
    """The program between codegen and the runtime is ir/program.py's classes (values, kernels,
    launch and host steps): nothing in codegen or the runtime reads or builds its steps as
    dicts. The JSON form exists only in ir/program.py (to_json/from_json) and in
    runtime/validate.py, the engine file's schema, which checks that JSON before it is read."""
    schema = {"runtime/validate.py"}
    problems = []
    for layer in ("codegen", "runtime"):
        for path, rel in _layer_files(layer):
            if rel.as_posix() in schema:
                continue
            tree = ast.parse(path.read_text(), filename=str(path))
            problems += [f"{rel}:{line}: [{key!r}]" for line, key in _program_dict_uses(tree)]
    assert not problems, "the program read as a dict:\n" + "\n".join(problems)


def test_the_program_dict_check_finds_dict_steps():
    """The check above fires on the patterns it is there to stop."""
    code = 'for s in program["steps"]:\n    if s.get("kind") == "launch" and "meta" in s["args"][0]:\n        pass\n'
    keys = sorted(key for _, key in _program_dict_uses(ast.parse(code)))
    assert keys == ["args", "kind", "meta", "steps"]
