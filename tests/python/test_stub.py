"""The typed stub python/crossicl/_crossicl.pyi names exactly what the built module exports: every public
function, class, attribute, and every public method and property of each class (regenerate it with
scripts/gen_stub.sh after changing the bindings)."""
from __future__ import annotations

import ast
import pathlib

import crossicl
from crossicl import _crossicl

STUB = pathlib.Path(crossicl.__file__).resolve().parent / "_crossicl.pyi"


def public(names):
    return {n for n in names if not n.startswith("_")}


def stub_tree():
    assert STUB.exists(), f"missing stub {STUB}"
    return ast.parse(STUB.read_text(encoding="utf-8"))


def stub_members(node: ast.ClassDef | ast.Module) -> set[str]:
    out = set()
    for item in node.body:
        if isinstance(item, (ast.FunctionDef, ast.ClassDef)):
            out.add(item.name)
        elif isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
            out.add(item.target.id)
        elif isinstance(item, ast.Assign):
            out.update(t.id for t in item.targets if isinstance(t, ast.Name))
    return public(out)


def test_stub_lists_every_module_name():
    tree = stub_tree()
    runtime = public(dir(_crossicl))
    declared = stub_members(tree)
    assert runtime - declared == set(), "names missing from the stub"
    assert declared - runtime == set(), "stub names the module does not have"


def test_stub_lists_every_class_member():
    tree = stub_tree()
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    for name, node in classes.items():
        runtime_cls = getattr(_crossicl, name)
        runtime = {m for m in public(vars(runtime_cls)) if not m.startswith("__")}
        declared = stub_members(node)
        assert runtime - declared == set(), f"{name}: members missing from the stub"
        assert declared - runtime == set(), f"{name}: stub members the class does not have"
