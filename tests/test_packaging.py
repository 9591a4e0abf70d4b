"""What a built wheel holds: every folder of Python modules under copynce_fast/ as a package, kernels/ as
copynce_fast.kernels and never as a top-level ``kernels`` (STYLE.md B2).

The package list is read from setup.py itself (setuptools runs it up to the point where it would build), so a list
that forgets a new subpackage, or a subpackage that forgets its ``__init__.py``, fails here and not as a user's
``ModuleNotFoundError`` after a non-editable install.
"""
import os
from pathlib import Path

import pytest
import setuptools  # noqa: F401  (first: it makes ``distutils`` its own copy, the one setup.py's setup() runs on)
from distutils.core import run_setup  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def packaging_problems(package_root: Path, packages: list[str], package_dir: dict) -> list[str]:
    """What a wheel built with ``packages`` / ``package_dir`` would get wrong for the tree at ``package_root``
    (the copynce_fast/ folder): module folders without ``__init__.py`` or missing from the list, a top-level
    ``kernels``, kernels/ not mapped to copynce_fast.kernels."""
    bad = []
    folders = sorted({p.parent for p in package_root.rglob("*.py") if "__pycache__" not in p.parts})
    for folder in folders:
        name = ".".join((package_root.name,) + folder.relative_to(package_root).parts)
        if not (folder / "__init__.py").is_file():
            bad.append(f"{name}: no __init__.py")
        if name not in packages:
            bad.append(f"{name}: not in setup.py's packages")
    if "kernels" in packages:
        bad.append("kernels: a top-level package (it must be copynce_fast.kernels)")
    if "copynce_fast.kernels" not in packages or package_dir.get("copynce_fast.kernels") != "kernels":
        bad.append("copynce_fast.kernels: not packaged from kernels/")
    return bad


@pytest.fixture(scope="module")
def dist():
    cwd = Path.cwd()
    os.chdir(ROOT)  # setup.py lists csrc/ relative to the checkout
    try:
        return run_setup("setup.py", script_args=["--name"], stop_after="init")
    finally:
        os.chdir(cwd)


def test_setup_packages_every_subpackage(dist):
    assert "copynce_fast.video" in dist.packages and len(dist.packages) > 10
    assert packaging_problems(ROOT / "copynce_fast", dist.packages, dist.package_dir) == []
    assert (ROOT / "kernels" / "__init__.py").is_file()


def test_the_packaging_check_can_fail(tmp_path):
    root = tmp_path / "copynce_fast"
    for path in ("__init__.py", "listed/__init__.py", "forgotten/__init__.py", "bare/x.py"):
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text("")
    found = packaging_problems(root, ["copynce_fast", "copynce_fast.listed", "kernels"], {})
    assert found == ["copynce_fast.bare: no __init__.py", "copynce_fast.bare: not in setup.py's packages",
                     "copynce_fast.forgotten: not in setup.py's packages",
                     "kernels: a top-level package (it must be copynce_fast.kernels)",
                     "copynce_fast.kernels: not packaged from kernels/"]
