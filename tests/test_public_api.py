"""The public API is explicit: everything in __all__ exists, and the
namespace layout of the design card holds."""

from __future__ import annotations

import importlib

import irmin


def test_all_names_exist():
    for name in irmin.__all__:
        assert hasattr(irmin, name), name
    assert {"open", "Repo", "Store", "Tree", "Commit", "Info", "ConflictError"} <= set(irmin.__all__)


def test_namespace_packages():
    for mod in ("irmin.backends", "irmin.sync", "irmin.server", "irmin.backends.memory"):
        importlib.import_module(mod)
    assert irmin.backends.__file__.replace("\\", "/").endswith("backends/__init__.py")


def test_one_exception_root():
    for name in ("ConflictError", "NotFoundError", "MalformedObject", "MissingObject",
                 "InvalidURI", "StoreError", "InvalidPath", "TestAndSetFailed"):
        assert issubclass(getattr(irmin, name), irmin.IrminError), name


def test_backends_do_not_import_the_core():
    import ast
    import pathlib

    root = pathlib.Path(irmin.backends.__file__).parent
    for f in root.glob("*.py"):
        tree = ast.parse(f.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                assert not (node.module.startswith("irmin") and not node.module.startswith("irmin.backends")), f
            if isinstance(node, ast.ImportFrom) and node.level >= 2:
                raise AssertionError(f"{f} imports above backends/")
