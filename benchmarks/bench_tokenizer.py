"""Encode throughput (MB/s of UTF-8 input) of crossicl.Tokenizer vs HF `tokenizers` on the same tokenizer.json.

Not a test. Usage (from the repository root, with a development build):
    PYTHONPATH=python:build/<dir>/pyext python3 benchmarks/bench_tokenizer.py [--mb 4] [--data ../shared]

Tokenizers: ../shared/models/llama2/tokenizer.json (LLaMA-2 style BPE with byte fallback), tokenizer.model
(SentencePiece, against the `sentencepiece` package) and a byte-level BPE with the LLaMA-3 split regex trained
here with HF tokenizers. Text: seeded mixed-script lines (mostly English-like words). Each figure is the best
of 3 runs; ratios > 1 mean crossicl is faster.
"""
from __future__ import annotations

import argparse
import pathlib
import random
import string
import sys
import tempfile
import time

import crossicl
import sentencepiece as spm
import tokenizers
from tokenizers import Regex, decoders, models, pre_tokenizers, trainers

LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
    r"\s+(?!\S)|\s+"
)


def make_lines(mb: float, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = ["".join(rng.choice(string.ascii_lowercase) for _ in range(rng.randint(2, 9))) for _ in range(3000)]
    words += ["the", "of", "and", "to", "in", "is", "that", "for", "it", "was"] * 100
    extras = ["\u4f60\u597d", "caf\xe9", "\u043f\u0440\u0438\u0432\u0435\u0442", "2024", "3.14", "\U0001F600"]
    extras += ["it's", "--", "(x)"]
    lines, size = [], 0
    while size < mb * 1e6:
        n = rng.randint(5, 40)
        line = " ".join(rng.choice(words) if rng.random() < 0.93 else rng.choice(extras) for _ in range(n))
        line = line[0].upper() + line[1:] + "."
        lines.append(line)
        size += len(line.encode("utf-8")) + 1
    return lines


def best_of(fn, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def train_llama3(path: pathlib.Path, lines: list[str]) -> pathlib.Path:
    tok = tokenizers.Tokenizer(models.BPE(ignore_merges=True))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_REGEX), "isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=8000, show_progress=False, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(lines[:20000], trainer)
    out = path / "llama3_style.json"
    tok.save(str(out))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--mb", type=float, default=4.0, help="megabytes of text")
    ap.add_argument("--data", default=str(pathlib.Path(__file__).resolve().parents[2] / "shared"))
    args = ap.parse_args()
    models_dir = pathlib.Path(args.data) / "models" / "llama2"
    lines = make_lines(args.mb)
    text = "\n".join(lines)
    mb = len(text.encode("utf-8")) / 1e6
    print(f"text: {mb:.2f} MB in {len(lines)} lines; crossicl {crossicl.__version__}, "
          f"tokenizers {tokenizers.__version__}, sentencepiece {spm.__version__}")

    with tempfile.TemporaryDirectory() as tmp:
        cases = [("llama2 tokenizer.json (BPE, byte fallback)", models_dir / "tokenizer.json"),
                 ("byte-level BPE, LLaMA-3 regex (trained)", train_llama3(pathlib.Path(tmp), lines))]
        print(f"{'tokenizer':45s} {'mode':22s} {'crossicl MB/s':>14s} {'HF MB/s':>9s} {'ratio':>6s}")
        for name, path in cases:
            ours = crossicl.Tokenizer(path)
            ref = tokenizers.Tokenizer.from_file(str(path))
            assert ours.encode_batch(lines[:2000], bos=False) == [
                e.ids for e in ref.encode_batch(lines[:2000], add_special_tokens=False)]
            rows = [
                ("one call per line", lambda: [ours.encode(l, bos=False) for l in lines],
                 lambda: [ref.encode(l, add_special_tokens=False) for l in lines]),
                ("batch (threads)", lambda: ours.encode_batch(lines, bos=False),
                 lambda: ref.encode_batch(lines, add_special_tokens=False)),
            ]
            for mode, f_ours, f_ref in rows:
                t_ours, t_ref = best_of(f_ours), best_of(f_ref)
                print(f"{name:45s} {mode:22s} {mb / t_ours:14.2f} {mb / t_ref:9.2f} {t_ref / t_ours:6.2f}")
        ours = crossicl.Tokenizer(models_dir / "tokenizer.model")
        ref = spm.SentencePieceProcessor(model_file=str(models_dir / "tokenizer.model"))
        t_ours = best_of(lambda: [ours.encode(l, bos=False) for l in lines])
        t_ref = best_of(lambda: [ref.encode(l) for l in lines])
        print(f"{'llama2 tokenizer.model (vs sentencepiece)':45s} {'one call per line':22s} {mb / t_ours:14.2f} "
              f"{mb / t_ref:9.2f} {t_ref / t_ours:6.2f}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
