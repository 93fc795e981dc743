"""Which quantisation schemes could meet the int8 quality bar (issue 18: greedy first lines identical to float32 on
>= 97 % of 200 of the paper's prompts): simulated ("fake") quantisation of the Linear layers of SmolLM2-135M-
Instruct in HF transformers, each scheme's greedy first lines against the same model unquantised.

  python3 benchmarks/int8_schemes.py [--n 200] [--schemes 0:0,0:f,32:f,...] [--calibration 32 | crossicl]
  python3 benchmarks/int8_schemes.py --llamacpp     # llama.cpp's own Q8_0 and BF16 GGUFs against its F32 GGUF

A scheme is "W:A", the weights' rounding and the activations' (every Linear input, per token):
  f      float32, not quantised
  b      bfloat16
  0      int8 with one scale per row (a weight's output channel, an activation's token), round half to even:
         what Engine(quantize="int8") runs, without its smoothing
  G      int8 with one scale per G consecutive input channels (32 is llama.cpp's Q8_0 block)
  r      (activations) two int8 terms per token: the row quantised, then the residual quantised again
  gptq   (weights) int8 per output channel, rounded by GPTQ (Frantar et al., 2023) with the calibration's Hessians
  s      (weights) SmoothQuant alpha 0.5 folded in before rounding per channel, the activations divided by the same
         factors (what Engine(quantize="int8") runs, with A = 0)
  sgptq  both
The LM head (tied to the embeddings) is never smoothed or GPTQ-rounded, as in the engine. Calibration (scales for
s, Hessians for gptq): the paper's prompts after the first --n (in-distribution: GPTQ's best case), or "crossicl"
for the engine's own calibration texts (src/detail/calibration_text.h). Simulation rounds like the engine's int8
path but multiplies in float32, so its figures are the scheme's, not a build's: benchmarks/int8_quality.py
measures the engine itself.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import re
import subprocess
import sys
import time

import torch

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
from int8_quality import first_line, paper_prompts  # noqa: E402

REPO = pathlib.Path(__file__).resolve().parent.parent
MODELS = REPO / "build" / "bench" / "models"
GEN_TOKENS = 10


def fake_quant(x: torch.Tensor, mode) -> torch.Tensor:
    """x rounded as `mode` says (see the module doc), back in float32."""
    if mode == "b":
        return x.to(torch.bfloat16).to(torch.float32)
    if mode == "r":
        first = fake_quant(x, 0)
        return first + fake_quant(x - first, 0)
    k = x.shape[-1]
    g = k if mode == 0 else mode
    if k % g:
        raise ValueError(f"group {g} does not divide {k} input channels")
    xs = x.reshape(*x.shape[:-1], k // g, g)
    scale = xs.abs().amax(-1, keepdim=True).clamp_min(1e-30) / 127
    return (torch.round(xs / scale).clamp(-127, 127) * scale).reshape(x.shape)


def gptq(w: torch.Tensor, hessian: torch.Tensor, damp: float = 0.01, block: int = 128) -> torch.Tensor:
    """w [out, in] rounded to int8 per output channel by GPTQ against the input Hessian [in, in]; dequantised."""
    w = w.double().clone()
    h = hessian.clone()
    dead = torch.diag(h) == 0
    h[dead, dead] = 1
    w[:, dead] = 0
    h += damp * torch.diag(h).mean() * torch.eye(h.shape[0], dtype=h.dtype)
    hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(h)), upper=True)
    scale = w.abs().amax(1).clamp_min(1e-30) / 127
    q = torch.zeros_like(w)
    for b0 in range(0, w.shape[1], block):
        b1 = min(b0 + block, w.shape[1])
        err = torch.zeros(w.shape[0], b1 - b0, dtype=w.dtype)
        for i in range(b0, b1):
            col = w[:, i]
            q[:, i] = torch.round(col / scale).clamp(-127, 127) * scale
            err[:, i - b0] = (col - q[:, i]) / hinv[i, i]
            w[:, i + 1:b1] -= err[:, i - b0:i - b0 + 1] * hinv[i, i + 1:b1].unsqueeze(0)
        w[:, b1:] -= err @ hinv[b0:b1, b1:]
    return q.float()


class Simulator:
    """An HF causal LM whose Linear weights and inputs are rounded per scheme."""

    def __init__(self, model_dir: pathlib.Path, threads: int):
        import transformers
        torch.set_num_threads(threads)
        self.tok = transformers.AutoTokenizer.from_pretrained(model_dir)
        self.model = transformers.AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
        self.linears = {n: m for n, m in self.model.named_modules() if isinstance(m, torch.nn.Linear)}
        self.float_weights = {n: m.weight.data.clone() for n, m in self.linears.items()}
        self.act_mode = None       # rounding of every Linear input (None: float)
        self.smooth: dict = {}     # per Linear: the factors its input is divided by (weights multiplied)
        self.calibrating = False
        self.hessian = {n: torch.zeros(m.in_features, m.in_features, dtype=torch.float64)
                        for n, m in self.linears.items()}
        self.amax: dict = {}
        self.weights_scheme = "f"  # what the Linear weights hold now
        for name, mod in self.linears.items():
            mod.register_forward_pre_hook(self._hook(name))

    def encode(self, text: str) -> list[int]:
        return self.tok(text)["input_ids"]

    def _hook(self, name):
        def pre(mod, args):
            x = args[0]
            if self.calibrating:
                rows = x.reshape(-1, x.shape[-1]).double()
                self.hessian[name] += rows.t() @ rows
                m = rows.abs().amax(0).float()
                self.amax[name] = m if name not in self.amax else torch.maximum(self.amax[name], m)
            if self.act_mode is None:
                return None
            s = self.smooth.get(name)
            return (fake_quant(x / s, self.act_mode) * s,) if s is not None else (fake_quant(x, self.act_mode),)
        return pre

    def calibrate(self, texts: list[str]) -> None:
        self.calibrating = True
        with torch.no_grad():
            for t in texts:
                self.model(self.tok(t, return_tensors="pt")["input_ids"])
        self.calibrating = False

    def smoothing_factors(self, name: str, alpha: float = 0.5) -> torch.Tensor:
        a, w = self.amax[name], self.float_weights[name].abs().amax(0)
        s = (a.clamp_min(1e-30).pow(alpha) / w.clamp_min(1e-30).pow(1 - alpha)).clamp(1e-4, 1e4)
        return torch.where((a > 0) & (w > 0), s, torch.ones_like(s))

    def set_scheme(self, weights: str, acts: str) -> None:
        self.act_mode = None if acts == "f" else acts if acts in ("b", "r") else int(acts)
        if weights == self.weights_scheme:  # rounded already (GPTQ takes a minute)
            return
        self.weights_scheme = weights
        smooth = weights in ("s", "sgptq")
        self.smooth = {}
        for name, mod in self.linears.items():
            w = self.float_weights[name]
            if weights == "f":
                mod.weight.data = w.clone()
            elif weights == "b" or weights.isdigit():
                mod.weight.data = fake_quant(w, "b" if weights == "b" else int(weights))
            elif name == "lm_head":  # tied to the embeddings: plain per-row rounding, as the engine does
                mod.weight.data = fake_quant(w, 0)
            else:
                s = self.smoothing_factors(name) if smooth else torch.ones(w.shape[1])
                if smooth:
                    self.smooth[name] = s
                h = self.hessian[name] / s.double().unsqueeze(0) / s.double().unsqueeze(1)
                ws = w * s
                mod.weight.data = (gptq(ws, h) if weights.endswith("gptq") else fake_quant(ws, 0)) / s

    def generate(self, prompts: list[str]) -> list[str]:
        out = []
        with torch.no_grad():
            for p in prompts:
                ids = self.tok(p, return_tensors="pt")["input_ids"]
                g = self.model.generate(ids, max_new_tokens=GEN_TOKENS, do_sample=False,
                                        pad_token_id=self.tok.eos_token_id)
                out.append(self.tok.decode(g[0, ids.shape[1]:], skip_special_tokens=True))
        return out


def agreement(ref: list[str], other: list[str]) -> int:
    return sum(first_line(a) == first_line(b) for a, b in zip(ref, other))


def run_schemes(args) -> None:
    from paper_workload import smollm2_hf_dir

    sim = Simulator(smollm2_hf_dir(MODELS), args.threads)
    ncal = 0 if args.calibration == "crossicl" else int(args.calibration)
    prompts = paper_prompts(args.n + ncal, sim)
    prompts, calib = prompts[:args.n], prompts[args.n:]
    if args.calibration == "crossicl":
        header = (REPO / "src" / "detail" / "calibration_text.h").read_text()
        calib = re.findall(r'R"cal\((.*?)\)cal"', header, re.S)
    print(f"{len(prompts)} prompts; calibration: {len(calib)} texts, "
          f"{sum(len(sim.encode(t)) for t in calib)} tokens", flush=True)
    sim.calibrate(calib)
    sim.set_scheme("f", "f")
    ref = sim.generate(prompts)
    print("| weights | activations | first line identical |\n|---|---|---:|")
    for scheme in args.schemes.split(","):
        w, a = scheme.split(":")
        t0 = time.time()
        sim.set_scheme(w, a)
        same = agreement(ref, sim.generate(prompts))
        print(f"| {w} | {a} | {same}/{len(ref)} ({100 * same / len(ref):.1f} %) |  <!-- {time.time() - t0:.0f} s -->",
              flush=True)


def llamacpp_texts(name: str, n: int, threads: int) -> list[str]:
    """Greedy first GEN_TOKENS of llama.cpp on smollm2-135m-NAME.gguf for the first n paper prompts."""
    import llama_cpp

    if name == "q8_0":  # as paper_workload.worker_llamacpp: no AMX repacking (SIGSEGV/SIGILL where tiles are denied)
        from paper_workload import llamacpp_without_extra_bufts
        llamacpp_without_extra_bufts()
    llm = llama_cpp.Llama(model_path=str(MODELS / f"smollm2-135m-{name}.gguf"), n_ctx=2200, n_batch=512,
                          n_threads=threads, n_threads_batch=threads, verbose=False)

    class Enc:
        def encode(self, text):
            return llm.tokenize(text.encode(), add_bos=False, special=False)

    enc, texts = Enc(), []
    for p in paper_prompts(n, enc):
        gen = []
        for tok in llm.generate(enc.encode(p), top_k=1, temp=0.0, reset=True):
            if tok == llm.token_eos() or len(gen) >= GEN_TOKENS:
                break
            gen.append(tok)
        texts.append(llm.detokenize(gen).decode("utf-8", "replace"))
    return texts


def run_llamacpp(args) -> None:
    """llama.cpp's Q8_0 and BF16 GGUFs of the same weights against its F32 GGUF, greedy, same prompts; each GGUF
    in a process of its own, as the other benchmarks run llama.cpp."""
    from paper_workload import smollm2_gguf

    for name in ("f32", "q8_0", "bf16"):
        smollm2_gguf(MODELS, name)  # made once here, not by the children at once
    outs = {}
    for name in ("f32", "q8_0", "bf16"):
        res = subprocess.run([sys.executable, __file__, "--llamacpp-one", name, "--n", str(args.n),
                              "--threads", str(args.threads)], check=True, capture_output=True, text=True)
        outs[name] = json.loads(res.stdout.strip().splitlines()[-1])
    print("| llama.cpp GGUF | first line identical to its F32 |\n|---|---:|")
    for name in ("q8_0", "bf16"):
        same = agreement(outs["f32"], outs[name])
        print(f"| {name.upper()} | {same}/{len(outs['f32'])} ({100 * same / len(outs['f32']):.1f} %) |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--schemes", default="b:b,0:0,0:f,0:r,s:0,gptq:f,gptq:r,32:f,32:32,32:r",
                    help="W:A pairs; those sharing W run in a row round the weights once")
    ap.add_argument("--calibration", default="32", help="paper prompts after the first --n, or 'crossicl'")
    ap.add_argument("--llamacpp", action="store_true", help="llama.cpp Q8_0 / BF16 against F32 instead")
    ap.add_argument("--llamacpp-one", help=argparse.SUPPRESS)  # one GGUF's texts as JSON (a child process)
    args = ap.parse_args()
    if args.llamacpp_one:
        print(json.dumps(llamacpp_texts(args.llamacpp_one, args.n, args.threads)))
    elif args.llamacpp:
        run_llamacpp(args)
    else:
        run_schemes(args)


if __name__ == "__main__":
    main()
