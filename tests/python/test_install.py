"""The installed package coexists with torch: the extension exports nothing but its init function, importing
crossicl leaves libc10's flags untouched (sentencepiece's FLAGS_minloglevel once overwrote them, so a failed
torch allocation aborted the process), the torch it was built against is checked at import, and the kernel path
is chosen at run time (CROSSICL_ISA forces a lower one)."""
from __future__ import annotations

import os
import pathlib
import shutil
import subprocess
import sys
import textwrap

import pytest

import crossicl

MODULE = pathlib.Path(crossicl._crossicl.__file__)


def run_python(code: str, env: dict | None = None) -> subprocess.CompletedProcess:
    """Runs `code` in a fresh interpreter with this test's sys.path, so it imports the crossicl under test."""
    full = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), **(env or {}))
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env=full,
                          timeout=300)


def test_extension_exports_only_its_init_function():
    nm = shutil.which("nm")
    assert nm, "binutils' nm is needed to list the extension's dynamic symbols"
    out = subprocess.run([nm, "-D", "--defined-only", str(MODULE)], capture_output=True, text=True, check=True)
    names = [line.split()[-1] for line in out.stdout.splitlines() if line.strip()]
    assert names == ["PyInit__crossicl"], names


def test_extension_needs_no_development_library():
    readelf = shutil.which("readelf")
    assert readelf
    out = subprocess.run([readelf, "-d", str(MODULE)], capture_output=True, text=True, check=True).stdout
    needed = [line.split("[")[1].rstrip("]") for line in out.splitlines() if "(NEEDED)" in line]
    for lib in needed:
        assert not lib.startswith(("libfmt", "libsentencepiece", "libprotobuf", "libz.", "libabsl")), needed


@pytest.mark.skipif(not getattr(crossicl, "has_engine", False), reason="crossicl built without the engine")
def test_import_leaves_torch_flags_and_allocation_errors_alone():
    # 32 bytes from libc10's FLAGS_minloglevel: sentencepiece's 32-byte flag object of the same name was bound
    # there and overwrote FLAGS_caffe2_use_fatal_for_enforce and its neighbours.
    r = run_python("""
        import ctypes, os, torch
        lib = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libc10.so"))
        addr = ctypes.addressof(ctypes.c_int32.in_dll(lib, "FLAGS_minloglevel"))
        before = ctypes.string_at(addr, 32)
        import crossicl
        crossicl.Tokenizer  # the sentencepiece-backed code is loaded with the module
        assert ctypes.string_at(addr, 32) == before, (before.hex(), ctypes.string_at(addr, 32).hex())
        try:
            torch.empty(10**15)
        except RuntimeError as e:
            print("raised", type(e).__name__)
    """)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "raised OutOfMemoryError" in r.stdout or "raised RuntimeError" in r.stdout, r.stdout


@pytest.mark.skipif(not getattr(crossicl, "has_engine", False), reason="crossicl built without the engine")
def test_import_names_both_torch_versions_when_they_differ():
    r = run_python("""
        import torch
        torch.__version__ = "1.99.0"
        try:
            import crossicl
        except ImportError as e:
            print(e)
    """)
    assert r.returncode == 0, r.stderr[-2000:]
    from crossicl._build import TORCH_VERSION
    assert "1.99.0" in r.stdout and TORCH_VERSION in r.stdout, r.stdout


def test_kernel_path_is_chosen_at_run_time_and_can_be_forced_lower():
    paths = crossicl.supported_isas()
    assert paths[0] == "baseline" and crossicl.kernel_isa() == (os.environ.get("CROSSICL_ISA") or paths[-1])
    for path in paths:
        r = run_python("import crossicl; print(crossicl.kernel_isa())", env={"CROSSICL_ISA": path})
        assert r.returncode == 0 and r.stdout.strip() == path, r.stderr[-2000:]
    r = run_python("""
        import crossicl
        try:
            crossicl.kernel_isa()
        except ValueError as e:
            print(e)
    """, env={"CROSSICL_ISA": "sse9"})
    assert "CROSSICL_ISA='sse9'" in r.stdout and "baseline, avx2 or avx512" in r.stdout, r.stdout + r.stderr
    if "avx512" not in paths:
        r = run_python("""
            import crossicl
            try:
                crossicl.kernel_isa()
            except ValueError as e:
                print(e)
        """, env={"CROSSICL_ISA": "avx512"})
        assert "lacks" in r.stdout, r.stdout + r.stderr
