#!/usr/bin/env python3
"""Seed inputs of the fuzz targets, made at run time from the shared test data (never copied into the repo).

    make_seeds.py TARGET DATA_DIR OUT_DIR

Real files are reduced to what a fuzzer can mutate quickly (a few KB to 64 KB): GGUF vocabularies cut to their
first few hundred tokens, tokenizer.json with a cut vocabulary and the merges that stay inside it, the first
lines of each JSON Lines dataset. Synthetic seeds (safetensors, config.json, GGUF tensors of every quantisation)
cover what ../shared has no file for. A missing data directory leaves only the synthetic seeds.
"""
from __future__ import annotations

import gzip
import json
import pathlib
import random
import re
import struct
import sys

# ------------------------------------------------------------------------------------------------ GGUF

GGUF_SCALAR = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<B", 10: "<Q", 11: "<q", 12: "<d"}
# ggml type -> (elements per block, bytes per block)
GGML_BLOCKS = {0: (1, 4), 1: (1, 2), 2: (32, 18), 3: (32, 20), 6: (32, 22), 7: (32, 24), 8: (32, 34),
               12: (256, 144), 13: (256, 176), 14: (256, 210), 30: (1, 2)}


def _read_value(buf: bytes, pos: int, vtype: int):
    if vtype in GGUF_SCALAR:
        fmt = GGUF_SCALAR[vtype]
        return struct.unpack_from(fmt, buf, pos)[0], pos + struct.calcsize(fmt)
    if vtype == 8:
        (n,) = struct.unpack_from("<Q", buf, pos)
        return buf[pos + 8:pos + 8 + n], pos + 8 + n
    if vtype == 9:
        etype, count = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        items = []
        for _ in range(count):
            v, pos = _read_value(buf, pos, etype)
            items.append(v)
        return (etype, items), pos
    raise ValueError(f"GGUF value type {vtype}")


def read_gguf(buf: bytes):
    """(metadata [(key, type, value)], tensors [(name, dims, type, rel_offset)], data_start, alignment)."""
    version, n_tensors, n_kv = struct.unpack_from("<IQQ", buf, 4)
    pos = 24
    kv = []
    for _ in range(n_kv):
        (n,) = struct.unpack_from("<Q", buf, pos)
        key = buf[pos + 8:pos + 8 + n].decode()
        (vtype,) = struct.unpack_from("<I", buf, pos + 8 + n)
        value, pos = _read_value(buf, pos + 12 + n, vtype)
        kv.append((key, vtype, value))
    tensors = []
    for _ in range(n_tensors):
        (n,) = struct.unpack_from("<Q", buf, pos)
        name = buf[pos + 8:pos + 8 + n].decode()
        pos += 8 + n
        (nd,) = struct.unpack_from("<I", buf, pos)
        dims = list(struct.unpack_from(f"<{nd}Q", buf, pos + 4))
        pos += 4 + 8 * nd
        ttype, off = struct.unpack_from("<IQ", buf, pos)
        pos += 12
        tensors.append((name, dims, ttype, off))
    align = next((v for k, _, v in kv if k == "general.alignment"), 32)
    return kv, tensors, (pos + align - 1) // align * align, align


def _write_value(vtype: int, value) -> bytes:
    if vtype in GGUF_SCALAR:
        return struct.pack(GGUF_SCALAR[vtype], value)
    if vtype == 8:
        return struct.pack("<Q", len(value)) + value
    etype, items = value
    return struct.pack("<IQ", etype, len(items)) + b"".join(_write_value(etype, x) for x in items)


def write_gguf(kv, tensors, alignment: int = 32) -> bytes:
    """kv = [(key, type, value)], tensors = [(name, dims, type, data_bytes)] (packed in order, aligned)."""
    out = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), len(kv))
    for key, vtype, value in kv:
        out += struct.pack("<Q", len(key)) + key.encode() + struct.pack("<I", vtype) + _write_value(vtype, value)
    data, offsets = b"", []
    for _, _, _, payload in tensors:
        data += b"\0" * ((-len(data)) % alignment)
        offsets.append(len(data))
        data += payload
    for (name, dims, ttype, _), off in zip(tensors, offsets):
        out += struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", len(dims))
        out += b"".join(struct.pack("<Q", d) for d in dims) + struct.pack("<IQ", ttype, off)
    out += b"\0" * ((-len(out)) % alignment)
    return out + data


def _cut_vocab(kv, n_tokens: int):
    """kv with the tokenizer arrays cut to n_tokens and special ids past the cut dropped."""
    out = []
    for key, vtype, value in kv:
        if key in ("tokenizer.ggml.tokens", "tokenizer.ggml.scores", "tokenizer.ggml.token_type"):
            value = (value[0], value[1][:n_tokens])
        if key == "tokenizer.ggml.merges":
            value = (value[0], value[1][:n_tokens])
        if key.endswith("_token_id") and value >= n_tokens:
            continue
        out.append((key, vtype, value))
    return out


def gguf_seeds(data: pathlib.Path, out: pathlib.Path):
    rng = random.Random(0)
    real = [data / "models/stories260K/stories260K.gguf", data / "models/llama2/ggml-vocab-llama-spm.gguf",
            data / "models/minilm/ggml-vocab-bert-bge.gguf"]
    for path in real:
        if not path.is_file():
            continue
        buf = path.read_bytes()
        kv, tensors, data_start, _ = read_gguf(buf)
        kv = _cut_vocab(kv, 400)
        # Whole tensors that are small (norms), their bytes as stored.
        keep = []
        for name, dims, ttype, off in tensors:
            per_block, block_bytes = GGML_BLOCKS.get(ttype, (1, 4))
            numel = 1
            for d in dims:
                numel *= d
            nbytes = numel // per_block * block_bytes
            if nbytes <= 4096 and len(keep) < 8:
                keep.append((name, dims, ttype, buf[data_start + off:data_start + off + nbytes]))
        (out / f"{path.stem}.reduced.gguf").write_bytes(write_gguf(kv, keep))
        (out / f"{path.stem}.head.gguf").write_bytes(buf[:4096])
    # One tensor of every supported type (two blocks of random bytes; F16/BF16 may hold NaN, as real files can).
    tensors = []
    for ttype, (per_block, block_bytes) in sorted(GGML_BLOCKS.items()):
        tensors.append((f"t{ttype}", [per_block * 2, 1], ttype, rng.randbytes(block_bytes * 2)))
    (out / "all_types.gguf").write_bytes(write_gguf([], tensors))
    # Byte-level (gpt2) vocabularies with each pre-tokenizer name.
    byte_chars = [chr(c) for c in range(0x21, 0x7F)] + ["Ġ", "Ċ", "ĉ"] + [chr(0x100 + i) for i in range(40)]
    words = ["Ġt", "he", "Ġthe", "in", "er", "Ġa", "on", "Ġthe re", "Ġ1", "23"]
    tokens = byte_chars + [w.replace(" ", "") for w in words] + ["<|endoftext|>", "<|im_start|>"]
    merges = ["Ġ t", "h e", "Ġt he", "i n", "e r", "Ġ a", "o n", "2 3", "Ġ 1"]
    types = [1] * (len(tokens) - 2) + [3, 4]
    for pre in ["gpt2", "llama-bpe", "qwen2", "smollm"]:
        kv = [("tokenizer.ggml.model", 8, b"gpt2"), ("tokenizer.ggml.pre", 8, pre.encode()),
              ("tokenizer.ggml.tokens", 9, (8, [t.encode() for t in tokens])),
              ("tokenizer.ggml.token_type", 9, (5, types)),
              ("tokenizer.ggml.merges", 9, (8, [m.encode() for m in merges])),
              ("tokenizer.ggml.eos_token_id", 4, len(tokens) - 2),
              ("tokenizer.ggml.add_bos_token", 7, 0)]
        (out / f"gpt2_{pre}.gguf").write_bytes(write_gguf(kv, []))


# ------------------------------------------------------------------------------------------------ safetensors

def safetensors_image(entries, metadata=None, pad_to=8) -> bytes:
    header, data = {}, b""
    for name, dtype, shape, payload in entries:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [len(data), len(data) + len(payload)]}
        data += payload
    if metadata is not None:
        header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * ((-len(h)) % pad_to)
    return struct.pack("<Q", len(h)) + h + data


def safetensors_seeds(out: pathlib.Path):
    rng = random.Random(1)
    tiny = [("model.embed_tokens.weight", "F32", [10, 8], rng.randbytes(320)),
            ("model.norm.weight", "F32", [8], rng.randbytes(32)),
            ("model.layers.0.self_attn.q_proj.weight", "BF16", [8, 8], rng.randbytes(128)),
            ("model.layers.0.mlp.up_proj.weight", "F16", [12, 8], rng.randbytes(192)),
            ("scalar", "I64", [], rng.randbytes(8)), ("empty", "U8", [0, 3], b"")]
    (out / "tiny.safetensors").write_bytes(safetensors_image(tiny, {"format": "pt"}))
    (out / "unaligned.safetensors").write_bytes(safetensors_image(tiny[:2], pad_to=1))
    (out / "dtypes.safetensors").write_bytes(safetensors_image(
        [(f"t_{d}", d, [2, 2], rng.randbytes(4 * n)) for d, n in
         [("F64", 8), ("I32", 4), ("U16", 2), ("I8", 1), ("BOOL", 1), ("F8_E4M3", 1), ("U64", 8)]]))


# ------------------------------------------------------------------------------------------------ config.json

def config_seeds(out: pathlib.Path):
    base = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 64,
            "intermediate_size": 172, "num_hidden_layers": 2, "num_attention_heads": 8, "num_key_value_heads": 4,
            "vocab_size": 512, "max_position_embeddings": 256, "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
            "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2, "hidden_act": "silu",
            "attention_bias": False, "mlp_bias": False, "torch_dtype": "bfloat16"}
    variants = {
        "llama": base,
        "llama3": dict(base, eos_token_id=[2, 3], head_dim=16, rope_scaling={
            "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 128}),
        "rope_parameters": dict(base, rope_parameters={"rope_type": "default", "rope_theta": 500000.0},
                                num_key_value_heads=None, rope_scaling=None),
        "minimal": {k: base[k] for k in ("architectures", "hidden_size", "intermediate_size", "num_hidden_layers",
                                         "num_attention_heads", "vocab_size")},
    }
    for name, cfg in variants.items():
        (out / f"{name}.json").write_text(json.dumps(cfg, indent=2))


# ------------------------------------------------------------------------------------------------ llama2.c

def llama2c_seeds(data: pathlib.Path, out: pathlib.Path):
    path = data / "models/stories260K/stories260K.bin"
    if path.is_file():
        buf = path.read_bytes()
        (out / "stories260K.hdr").write_bytes(buf[:28] + struct.pack("<Q", len(buf)))
    # dim 8, hidden 12, 1 layer, 2 heads, 1 kv head, vocab -10 (untied), seq 4: 840 floats after the header
    (out / "untied.hdr").write_bytes(struct.pack("<7i", 8, 12, 1, 2, 1, -10, 4) + struct.pack("<Q", 28 + 4 * 840))
    (out / "short.hdr").write_bytes(struct.pack("<7i", 8, 12, 1, 2, 1, 10, 4))


# ------------------------------------------------------------------------------------------------ tokenizer.json

SAMPLE_TEXT = "Hello world! It's 2024 — naïve café, 東京 🙂\n\tdon't  stop <s> </s>"


def tokenizer_json_seeds(data: pathlib.Path, out: pathlib.Path):
    path = data / "models/llama2/tokenizer.json"
    if path.is_file():
        tok = json.loads(path.read_text())
        vocab = tok["model"]["vocab"]
        keep = {p: i for p, i in vocab.items() if i < 600}
        merges = []
        for m in tok["model"]["merges"]:
            a, b = m.split(" ", 1) if isinstance(m, str) else m
            if a in keep and b in keep and a + b in keep:
                merges.append(m)
        tok["model"]["vocab"] = keep
        tok["model"]["merges"] = merges
        text = json.dumps(tok, ensure_ascii=False).encode()
        (out / "llama2.seed").write_bytes(text + b"\0" + SAMPLE_TEXT.encode())
        cfg = data / "models/llama2/tokenizer_config.json"
        if cfg.is_file():
            (out / "llama2_config.seed").write_bytes(text + b"\0" + SAMPLE_TEXT.encode() + b"\0" + cfg.read_bytes())
    # A byte-level BPE in the style of GPT-2 / LLaMA-3 / Qwen2 / SmolLM.
    alphabet = [chr(c) for c in range(0x21, 0x7F)] + ["Ġ", "Ċ", "ĉ"]
    vocab = {c: i for i, c in enumerate(alphabet)}
    merges = [["Ġ", "t"], ["h", "e"], ["Ġt", "he"], ["i", "n"], ["e", "r"], ["Ġ", "a"], ["o", "n"]]
    for a, b in merges:
        vocab.setdefault(a + b, len(vocab))
    added = [{"id": len(vocab), "content": "<|endoftext|>", "special": True, "lstrip": False, "rstrip": False,
              "normalized": False, "single_word": False},
             {"id": len(vocab) + 1, "content": "<tool>", "special": False, "lstrip": True, "rstrip": True,
              "normalized": True, "single_word": False}]
    regexes = {
        "gpt2": r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+",
        "llama3": r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                  r"|\s*[\r\n]+|\s+(?!\S)|\s+",
    }
    for name, regex in regexes.items():
        doc = {"version": "1.0", "added_tokens": added, "normalizer": None,
               "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                   {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": False},
                   {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]},
               "post_processor": {"type": "TemplateProcessing",
                                  "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}},
                                             {"Sequence": {"id": "A", "type_id": 0}}],
                                  "pair": [{"Sequence": {"id": "A", "type_id": 0}}],
                                  "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>",
                                                                       "ids": [added[0]["id"]],
                                                                       "tokens": ["<|endoftext|>"]}}},
               "decoder": {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True},
               "model": {"type": "BPE", "dropout": None, "unk_token": None, "continuing_subword_prefix": None,
                         "end_of_word_suffix": None, "fuse_unk": False, "byte_fallback": False,
                         "ignore_merges": name == "llama3", "vocab": vocab, "merges": merges}}
        (out / f"bytelevel_{name}.seed").write_bytes(json.dumps(doc).encode() + b"\0" + SAMPLE_TEXT.encode())
    # Metaspace / Digits / WhitespaceSplit variants with a SentencePiece-style decoder.
    meta = {"added_tokens": [], "normalizer": {"type": "Sequence", "normalizers": [
                {"type": "Prepend", "prepend": "▁"}, {"type": "Replace", "pattern": {"String": " "},
                                                       "content": "▁"}]},
            "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
                {"type": "Digits", "individual_digits": True}, {"type": "WhitespaceSplit"},
                {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True}]},
            "decoder": {"type": "Sequence", "decoders": [
                {"type": "Replace", "pattern": {"String": "▁"}, "content": " "}, {"type": "ByteFallback"},
                {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
            "model": {"type": "BPE", "byte_fallback": True, "fuse_unk": True, "unk_token": "<unk>",
                      "vocab": {"<unk>": 0, "<0x41>": 1, "▁": 2, "a": 3, "b": 4, "▁a": 5, "ab": 6},
                      "merges": ["▁ a", "a b"]}}
    (out / "metaspace.seed").write_bytes(json.dumps(meta, ensure_ascii=False).encode() + b"\0" + b"ab 12 A\xc3\xa9")


# ------------------------------------------------------------------------------------------------ datasets

def jsonl_seeds(data: pathlib.Path, out: pathlib.Path, repo: pathlib.Path):
    files = sorted((data / "paper").glob("*/*.jsonl")) + sorted((data / "paper").glob("*/*.jsonl.gz"))
    files += sorted((repo / "python/crossicl/data/samples").glob("*.jsonl"))
    for i, path in enumerate(files[:24]):
        opener = gzip.open if path.suffix == ".gz" else open
        body = b""
        with opener(path, "rb") as f:
            for line in f:
                if len(body) + len(line) > 16384 and body:
                    break
                body += line[:16384]
                if body.count(b"\n") >= 12:
                    break
        name = f"{i:02d}_{path.name.split('.')[0]}"
        (out / f"{name}.jsonl").write_bytes(body)
        if i % 4 == 0:
            (out / f"{name}.jsonl.gz").write_bytes(gzip.compress(body, mtime=0))
    (out / "mixed.jsonl").write_bytes(
        b'{"id": 1, "fields": {"a": "x"}, "label": null, "extra": [1, {"k": [true, null, 2.5e3]}]}\r\n\n'
        b'{"id": "1b", "fields": {}, "label": "L\\u00e9\\ud83d\\ude42"}\n   \n{"id": 2, "fields": {"q": ""}}')


def task_sources(data: pathlib.Path, repo: pathlib.Path):
    return [p for p in (data / "paper/tasks.json", repo / "python/crossicl/data/samples/tasks.json") if p.is_file()]


def tasks_seeds(data: pathlib.Path, out: pathlib.Path, repo: pathlib.Path):
    for i, path in enumerate(task_sources(data, repo)):
        (out / f"tasks{i}.json").write_bytes(path.read_bytes())
        doc = json.loads(path.read_text())
        # One card with the template families: small enough to mutate quickly.
        tasks = doc.get("tasks", {})
        for name in list(tasks)[:3]:
            small = dict(doc, tasks={name: tasks[name]})
            small.pop("assembly", None)
            (out / f"tasks{i}_{len(list(out.iterdir()))}.json").write_text(json.dumps(small))


def template_seeds(data: pathlib.Path, out: pathlib.Path, repo: pathlib.Path):
    texts = set()

    def walk(x):
        if isinstance(x, str) and "{" in x:
            texts.add(x)
        elif isinstance(x, dict):
            for v in x.values():
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    for path in task_sources(data, repo):
        walk(json.loads(path.read_text()).get("templates", {}))
    texts |= {"{a}{b}{{c}}}}{{{d}", "Sentence: {sentence} \n Label:", "{", "}{x", "{_9}{9}{ x}"}
    for i, t in enumerate(sorted(texts)[:64]):
        names = sorted(set(re.findall(r"\{([A-Za-z_][A-Za-z0-9_]*)\}", t)))
        pairs = b"".join(n.encode() + b"\0" + f"<{n}>".encode() + b"\0" for n in names[:4])
        (out / f"t{i:02d}.seed").write_bytes(t.encode() + b"\0" + pairs)


def main() -> int:
    target, data, out = sys.argv[1], pathlib.Path(sys.argv[2]), pathlib.Path(sys.argv[3])
    repo = pathlib.Path(__file__).resolve().parents[2]
    out.mkdir(parents=True, exist_ok=True)
    makers = {
        "gguf": lambda: gguf_seeds(data, out),
        "safetensors": lambda: safetensors_seeds(out),
        "config": lambda: config_seeds(out),
        "llama2c": lambda: llama2c_seeds(data, out),
        "tokenizer_json": lambda: tokenizer_json_seeds(data, out),
        "jsonl": lambda: jsonl_seeds(data, out, repo),
        "tasks": lambda: tasks_seeds(data, out, repo),
        "template": lambda: template_seeds(data, out, repo),
    }
    if target not in makers:
        print(f"make_seeds.py: unknown target '{target}' (known: {', '.join(makers)})", file=sys.stderr)
        return 2
    makers[target]()
    return 0


if __name__ == "__main__":
    sys.exit(main())
