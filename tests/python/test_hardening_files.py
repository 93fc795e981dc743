"""Hostile model files through the Python surface (issue 17): vocabulary pieces that are not UTF-8 are refused at
load with the exception each entry point documents (ValueError for arrays given by the caller, crossicl.LoadError
naming the file and token index for a GGUF file)."""
from __future__ import annotations

import struct

import pytest

import crossicl

if not getattr(crossicl, "has_engine", False):  # pragma: no cover
    pytest.skip("crossicl built without the engine", allow_module_level=True)


def gguf_image(kv=(), tensors=(), data=b"") -> bytes:
    """A GGUF v3 image: kv = [(key, type, payload_bytes)], tensors = [(name, dims, type, rel_offset)]."""
    def s(x: bytes) -> bytes:
        return struct.pack("<Q", len(x)) + x
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, vtype, payload in kv:
        out += s(key.encode()) + struct.pack("<I", vtype) + payload
    for name, dims, ttype, off in tensors:
        out += s(name.encode()) + struct.pack("<I", len(dims)) + b"".join(struct.pack("<Q", d) for d in dims)
        out += struct.pack("<IQ", ttype, off)
    return out + b"\0" * ((-len(out)) % 32) + data


def strings(values: list[bytes]) -> bytes:
    return struct.pack("<IQ", 8, len(values)) + b"".join(struct.pack("<Q", len(v)) + v for v in values)


def test_from_vocab_piece_that_is_not_utf8_is_a_value_error():
    # bytes pass through to the C++ strings unchanged: a lone continuation byte once decoded past the piece
    with pytest.raises(ValueError, match=r"tokens\[1\] is not valid UTF-8"):
        crossicl.Tokenizer.from_vocab([b"a", b"\x80", b"b"], model="gpt2")
    tok = crossicl.Tokenizer.from_vocab(["a", "b", "ab"], model="gpt2", merges=["a b"])
    assert tok.decode(tok.encode("abba", bos=False)) == "abba"


def test_gguf_token_that_is_not_utf8_is_a_load_error_naming_file_and_index(tmp_path):
    img = gguf_image(kv=[("tokenizer.ggml.model", 8, struct.pack("<Q", 4) + b"gpt2"),
                         ("tokenizer.ggml.tokens", 9, strings([b"a", b"b", b"c", b"\xe2\x82"]))])
    p = tmp_path / "vocab.gguf"
    p.write_bytes(img)
    f = crossicl.GGUFFile(str(p))
    with pytest.raises(crossicl.LoadError, match=r"vocab\.gguf.*tokenizer\.ggml\.tokens\[3\] is not valid UTF-8"):
        f.tokenizer()



def test_gguf_metadata_string_that_is_not_utf8_reads_lossily(tmp_path):
    # a strict decode of a metadata string raised UnicodeDecodeError from GGUFFile.metadata
    name = b"\xffab"
    img = gguf_image(kv=[("general.name", 8, struct.pack("<Q", len(name)) + name)])
    p = tmp_path / "name.gguf"
    p.write_bytes(img)
    assert crossicl.GGUFFile(str(p)).metadata["general.name"] == "\ufffdab"
