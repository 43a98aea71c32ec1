"""Both install modes give a working `import ember.ir` (the repository root is the package)."""

import os
import shutil
import site
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import ember

REPO = Path(__file__).resolve().parent.parent


def test_installed_package_is_the_wheel_or_the_checkout():
    # Under scripts/test.sh ember comes from a non-editable install; in a developer's
    # editable install it is the checkout itself. Either way the grammar ships with it.
    assert (Path(ember.__file__).parent / "ir" / "grammar.lark").exists()


def test_every_package_is_listed_in_pyproject():
    """A package missing from pyproject's list imports in a checkout but not once installed."""
    if not (REPO / "pyproject.toml").exists():
        pytest.skip("not run from a checkout")
    import tomllib
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"ember"}
    for init in REPO.rglob("__init__.py"):
        rel = init.parent.relative_to(REPO)
        if rel.parts and rel.parts[0] in ("ir", "passes", "codegen", "runtime", "frontends", "serve"):
            found.add(".".join(("ember",) + rel.parts))
    assert found == listed, f"missing: {sorted(found - listed)}; stale: {sorted(listed - found)}"


@pytest.mark.slow
def test_editable_install_imports_the_checkout(tmp_path):
    """pip install -e . in a fresh environment whose dependencies come from this one."""
    if not (REPO / "pyproject.toml").exists():
        pytest.skip("not run from a checkout")
    env_dir = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             check=True, capture_output=True, text=True).stdout.strip()
    # Dependencies (numpy, lark, ...) from the running environment, linked one by one into a
    # folder the new env reads; Ember itself is left out, so only the editable install provides it.
    deps = tmp_path / "deps"
    deps.mkdir()
    ours = [p for p in site.getsitepackages() + [sysconfig.get_paths()["purelib"]] if "site-packages" in p]
    for folder in dict.fromkeys(ours):
        for entry in Path(folder).iterdir():
            if entry.name.lower().startswith(("ember", "__editable__")) or (deps / entry.name).exists():
                continue
            (deps / entry.name).symlink_to(entry)
    Path(purelib, "deps-from-test-env.pth").write_text(f"{deps}\n")
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO, checkout, ignore=shutil.ignore_patterns(".venv*", "venv", ".git", "__pycache__",
                                                                   ".hypothesis", "*.egg-info", "build"))
    result = subprocess.run([str(py), "-m", "pip", "install", "--quiet", "--no-deps", "-e", str(checkout)],
                            capture_output=True, text=True, env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    assert result.returncode == 0, result.stderr[-2000:]
    code = "import ember, ember.ir; from ember import ir; print(ember.ir.__file__); print(ir.f32[2])"
    result = subprocess.run([str(py), "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    path, t = result.stdout.split()
    assert Path(path).resolve() == (checkout / "ir" / "__init__.py").resolve()
    assert t == "f32[2]"
