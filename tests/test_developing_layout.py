"""DEVELOPING.md's Layout section names every Python file of the package and of kernels/, and only files that
exist: the map a newcomer reads cannot drift from the tree.

A package face (an ``__init__.py`` that defines no function or class: it re-exports, or guards an import) is
covered by its folder's line; an ``__init__.py`` with code of its own (the CLI parser, the root's lazy names) has
its line like any module.
"""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAPPED = ("copynce_fast", "kernels")  # the folders whose every .py file has its line


def layout_paths(markdown: str) -> set[str]:
    """Paths of the tree drawn in the first code block of the ``## Layout`` section: ``name/`` lines open a
    folder, ``├── name`` / ``└── name`` lines sit one level (four columns) under the line above them; lines
    without a ``──`` marker continue the previous description."""
    section = markdown.split("\n## Layout", 1)[1].split("\n## ", 1)[0]
    block = section.split("```", 2)[1]
    stack: list[str] = []
    paths = set()
    for line in block.splitlines()[1:]:  # the first line is the fence's language tag
        if not line.strip():
            continue
        if line[0] not in "│├└ ":
            depth, name = 0, line.split()[0]
        elif "── " in line:
            start = line.index("── ") + 3
            depth, name = start // 4, line[start:].split()[0]
        else:
            continue
        stack = stack[:depth] + [name]
        paths.add("".join(stack))
    return paths


def is_face(path: Path) -> bool:
    """An ``__init__.py`` without a top-level function or class."""
    if path.name != "__init__.py":
        return False
    tree = ast.parse(path.read_text(), str(path))
    return not any(isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) for node in tree.body)


def python_files() -> set[str]:
    """The files that need a line: every .py file of the mapped folders but the package faces."""
    return {p.relative_to(ROOT).as_posix() for top in MAPPED for p in (ROOT / top).rglob("*.py")
            if "__pycache__" not in p.parts and not is_face(p)}


def test_layout_names_every_python_file():
    listed = layout_paths((ROOT / "DEVELOPING.md").read_text())
    missing = sorted(python_files() - listed)
    assert missing == [], f"DEVELOPING.md's Layout section lacks a line for: {missing}"
    stale = sorted(p for p in listed if p.endswith(".py") and p.split("/")[0] in MAPPED and not (ROOT / p).is_file())
    assert stale == [], f"DEVELOPING.md's Layout section names files that do not exist: {stale}"


def test_faces_are_told_from_modules(tmp_path):
    for name, text in (("face", "from x import y\n__all__ = ['y']\n"), ("parser", "def main():\n    pass\n")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(text)
    assert is_face(tmp_path / "face" / "__init__.py") and not is_face(tmp_path / "parser" / "__init__.py")
    assert is_face(ROOT / "copynce_fast" / "data" / "__init__.py")
    assert not is_face(ROOT / "copynce_fast" / "cli" / "__init__.py")


def test_the_layout_reader_can_fail():
    text = ("# x\n\n## Layout\n\n```\npkg/                 floor\n├── a.py              A\n├── sub/              S\n"
            "│   ├── b.py          B\n│   │                 B, continued\n│   └── c.py          C\n└── d.py   D\n"
            "other/               O\n```\n\n## Next\n\n```\nignored/\n```\n")
    assert layout_paths(text) == {"pkg/", "pkg/a.py", "pkg/sub/", "pkg/sub/b.py", "pkg/sub/c.py", "pkg/d.py",
                                  "other/"}
