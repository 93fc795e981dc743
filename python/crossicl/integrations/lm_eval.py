"""``crossicl.Engine`` as the lm-evaluation-harness model ``crossicl`` (lm-eval 0.4.13:
``pip install 'crossicl[lm-eval]'``; docs/lm-eval.md).

Importing this module registers the model with lm-eval's registry::

    import lm_eval
    import crossicl.integrations.lm_eval  # noqa: F401  (registers "crossicl")
    out = lm_eval.simple_evaluate(model="crossicl", model_args="path=model_dir,threads=2", tasks=["arc_easy"])

lm-eval 0.4.13's ``lm_eval`` command knows only its built-in models (it reads no entry points for models), so the
command line goes through this module, which registers the model and then runs lm-eval's own CLI::

    python -m crossicl.integrations.lm_eval --model crossicl --model_args path=DIR,threads=2 --tasks ...

``model_args`` are the keyword arguments of ``crossicl.Engine`` (path, tokenizer, dtype, threads, n_ctx,
max_batch_tokens, cache_bytes, quantize, smooth_alpha; validated by the Engine) plus ``max_gen_toks``, the
generation budget of tasks that set none (256, as the hf backend). The device is lm-eval's ``--device`` (its
default "cuda:0" falls back to the cpu where torch has no CUDA, as with the hf backend). From Python,
``CrossiclLM(engine=e)`` wraps an open Engine. lm-eval's ``batch_size`` / ``max_batch_size`` are accepted and
unused: the Engine packs requests into forward passes of at most ``max_batch_tokens`` tokens itself.

Every convention is the hf backend's, so that the two agree request by request:

* tokenization (lm-eval's ``TemplateLM``): trailing spaces of a context move to its continuation; context +
  continuation are tokenized whole and split at the context's token count; an empty context becomes the prefix
  token (BOS, else EOS); a text gets the tokenizer's leading special tokens unless it starts with the BOS text.
* loglikelihood: context + continuation longer than max_length + 1 keeps its last max_length + 1 tokens. Requests
  are grouped by context and each context is prefilled once for all its continuations (``Engine.score_batch`` on
  token ids; shared prefixes of different contexts come from the prefix cache). is_greedy ("every continuation
  token is the argmax") is ``ScoreResult.greedy``, computed by the Engine from the same logits (ties: the
  lowest id, as torch.argmax in the hf backend).
* loglikelihood_rolling: lm-eval's disjoint rolling windows (max_length tokens, prefix token first), summed.
* generate_until: greedy (``do_sample=True`` raises ValueError); the context keeps its last
  max_length - max_gen_toks tokens; generation stops at EOS or a stop sequence, and the text, decoded without
  special tokens, is cut at the first stop sequence.
"""
from __future__ import annotations

if __name__ == "__main__":
    # `python -m crossicl.integrations.lm_eval`: run the CLI of the imported module, so that the model class is
    # defined and registered once (this file run as __main__ would register a second class under the same name).
    import sys

    from crossicl.integrations.lm_eval import cli_evaluate

    sys.exit(cli_evaluate())

import json
import logging
import os
import sys
from typing import Any, Sequence

import lm_eval.models  # noqa: F401  (the built-in models first: lm-eval loads them only into an empty registry)
import numpy as np
from lm_eval.api.model import TemplateLM
from lm_eval.api.registry import register_model
from lm_eval.models.utils import handle_stop_sequences, normalize_gen_kwargs, postprocess_generated_text
from lm_eval.utils import get_rolling_token_windows, make_disjoint_window
from tqdm import tqdm

import crossicl

log = logging.getLogger(__name__)

# Contexts per Engine call: enough to fill forward passes of max_batch_tokens, few enough for a live progress bar.
CHUNK = 64


def _engine_device(device: str) -> str:
    """lm-eval's --device (default "cuda:0") as an Engine device: "cuda" where torch has CUDA, else "cpu" (the hf
    backend's fallback)."""
    import torch

    kind = device.split(":")[0]
    if kind == "cuda" and not torch.cuda.is_available():
        log.info("device %r: torch has no CUDA device here, running on the cpu", device)
        return "cpu"
    return kind


@register_model("crossicl")
class CrossiclLM(TemplateLM):
    """lm-eval model over a crossicl.Engine: ``CrossiclLM(path, tokenizer=None, **engine_options)`` or
    ``CrossiclLM(engine=open_engine)``.

        lm = CrossiclLM("smollm2-135m-f32", threads=2)
        lm_eval.simple_evaluate(model=lm, tasks=["crossicl_arc_challenge"], task_manager=...)
    """

    def __init__(self, path: str | os.PathLike | None = None, tokenizer: str | os.PathLike | None = None, *,
                 engine: Any = None, max_gen_toks: int = 256, batch_size: Any = None, max_batch_size: Any = None,
                 device: str | None = None, **engine_options: Any) -> None:
        super().__init__()
        del batch_size, max_batch_size  # the Engine batches by max_batch_tokens
        if engine is None:
            if path is None:
                raise ValueError("crossicl needs model_args path=... (an HF directory, a GGUF file or a llama2.c "
                                 ".bin with tokenizer=...)")
            if device is not None:
                engine_options["device"] = _engine_device(str(device))
            engine = crossicl.Engine(path, tokenizer, **engine_options)
        elif path is not None or tokenizer is not None or engine_options:
            raise ValueError("pass either engine= or path= with Engine options, not both")
        if engine.tokenizer is None:
            raise ValueError("lm-eval sends text: open the Engine with a tokenizer (model_args tokenizer=...)")
        if int(max_gen_toks) <= 0:
            raise ValueError(f"max_gen_toks must be > 0 (max_gen_toks={max_gen_toks})")
        self.engine = engine
        self._tok = engine.tokenizer
        self._path = str(path) if path is not None else None
        self._max_gen_toks = int(max_gen_toks)
        self._device = engine.device
        bos = self._tok.bos_id
        self._prefix_id = bos if bos >= 0 else self._tok.eos_id
        self._prefix_text = self._tok.decode([self._prefix_id], keep_special=True) if self._prefix_id >= 0 else ""

    # The attributes lm-eval reads ---------------------------------------------------------------------------------

    @property
    def eot_token_id(self) -> int:
        return self._tok.eos_id

    @property
    def prefix_token_id(self) -> int:
        return self._prefix_id

    @property
    def max_length(self) -> int:
        return self.engine.n_ctx

    @property
    def max_gen_toks(self) -> int:
        return self._max_gen_toks

    def get_model_info(self) -> dict:
        return {"crossicl_version": crossicl.__version__, "model_path": self._path, "dtype": self.engine.dtype,
                "quantize": self.engine.quantize, "threads": self.engine.threads, "n_ctx": self.engine.n_ctx}

    def tok_encode(self, string: str, add_special_tokens: bool | None = None, **kwargs: Any) -> list[int]:
        """Token ids of string; add_special_tokens None = the tokenizer's leading special tokens unless string
        already starts with the BOS text (the hf backend's rule)."""
        if add_special_tokens is None:
            add_special_tokens = not (self._prefix_text and string.startswith(self._prefix_text))
        return self._tok.encode(string, bos=add_special_tokens)

    # Requests -----------------------------------------------------------------------------------------------------

    def _loglikelihood_tokens(self, requests: Sequence[tuple[Any, list[int], list[int]]],
                              disable_tqdm: bool = False, *, greedy: bool = True) -> list[tuple[float, bool]]:
        """(sum log-prob, is_greedy) of each (cache key, context ids, continuation ids); greedy=False skips the
        greedy check (is_greedy is then False)."""
        by_context: dict[tuple[int, ...], dict[tuple[int, ...], list[int]]] = {}
        full = []  # exactly max_length + 1 tokens: one more than the Engine's scoring keeps KV for
        for i, (_, context, continuation) in enumerate(requests):
            if not continuation or len(continuation) > self.max_length:
                raise ValueError(f"a continuation must have 1 to max_length tokens (tokens={len(continuation)}, "
                                 f"max_length={self.max_length})")
            # the hf backend's left truncation: the last max_length + 1 tokens (the last one is only predicted)
            context = (list(context) + list(continuation))[-(self.max_length + 1):][:-len(continuation)]
            if len(context) + len(continuation) > self.max_length:
                full.append((i, context, continuation))
            else:
                by_context.setdefault(tuple(context), {}).setdefault(tuple(continuation), []).append(i)
        contexts = sorted(by_context)  # neighbours share prefixes, which the prefix cache then still holds
        results: list[tuple[float, bool] | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc="Running loglikelihood requests")
        for a in range(0, len(contexts), CHUNK):
            chunk = contexts[a:a + CHUNK]
            candidates = [list(by_context[c]) for c in chunk]
            scores = self.engine.score_batch([list(c) for c in chunk], [[list(x) for x in cs] for cs in candidates])
            flags = [[bool(t.greedy) and greedy for t in s] for s in scores]
            for context, cands, cand_scores, cand_flags in zip(chunk, candidates, scores, flags):
                for cont, score, is_greedy in zip(cands, cand_scores, cand_flags):
                    answer = (float(score.sum), is_greedy)
                    for i in by_context[context][cont]:
                        results[i] = answer
                        if requests[i][0] is not None:
                            self.cache_hook.add_partial("loglikelihood", requests[i][0], answer)
                    bar.update(len(by_context[context][cont]))
        for i, context, continuation in full:
            results[i] = self._score_full_window(context, continuation)
            if requests[i][0] is not None:
                self.cache_hook.add_partial("loglikelihood", requests[i][0], results[i])
            bar.update(1)
        bar.close()
        return results  # type: ignore[return-value]

    def _score_full_window(self, context: list[int], continuation: list[int]) -> tuple[float, bool]:
        """(sum log-prob, is_greedy) of a continuation whose last token would sit one past the context window:
        one forward of every token but the last (as the hf backend runs it), from the logits of all positions."""
        logits = self.engine.logits(context + continuation[:-1])[len(context) - 1:]  # [len(continuation), vocab]
        top = logits.max(axis=1, keepdims=True)
        logsumexp = top[:, 0] + np.log(np.exp(logits - top).sum(axis=1))
        picked = logits[np.arange(len(continuation)), continuation]
        return float((picked - logsumexp).sum()), bool((logits.argmax(axis=1) == continuation).all())

    def loglikelihood_rolling(self, requests: list, disable_tqdm: bool = False) -> list[float]:
        windows, owner = [], []
        for i, req in enumerate(requests):
            (string,) = req.args
            for context, pred in map(make_disjoint_window, get_rolling_token_windows(
                    token_list=self.tok_encode(string), prefix_token=self.prefix_token_id,
                    max_seq_len=self.max_length, context_len=1)):
                windows.append((None, context, pred))
                owner.append(i)
        totals = [0.0] * len(requests)
        for i, (logprob, _) in zip(owner, self._loglikelihood_tokens(windows, disable_tqdm, greedy=False)):
            totals[i] += logprob
        for req, total in zip(requests, totals):
            self.cache_hook.add_partial("loglikelihood_rolling", req.args, total)
        return totals

    def generate_until(self, requests: list, disable_tqdm: bool = False) -> list[str]:
        groups: dict[str, list[int]] = {}  # requests with the same generation kwargs run together
        for i, req in enumerate(requests):
            groups.setdefault(json.dumps(req.args[1], sort_keys=True, default=str), []).append(i)
        eos = self._tok.decode([self.eot_token_id], keep_special=True) if self.eot_token_id >= 0 else None
        results: list[str | None] = [None] * len(requests)
        bar = tqdm(total=len(requests), disable=disable_tqdm, desc="Running generate_until requests")
        for idx in groups.values():
            gen_kwargs = requests[idx[0]].args[1]
            kwargs = normalize_gen_kwargs(gen_kwargs, self.max_gen_toks)
            until = handle_stop_sequences(kwargs.pop("until", None), eos=eos)
            max_gen = int(kwargs.pop("max_gen_toks"))
            if kwargs.pop("do_sample", False):
                raise ValueError(f"crossicl generates greedily only (gen_kwargs={gen_kwargs})")
            kwargs.pop("temperature", None)
            if kwargs:
                log.warning("crossicl ignores these generation kwargs: %s", sorted(kwargs))
            room = self.max_length - max_gen
            if room <= 0:
                raise ValueError(f"max_gen_toks must be < max_length (max_gen_toks={max_gen}, "
                                 f"max_length={self.max_length})")
            for a in range(0, len(idx), CHUNK):
                part = idx[a:a + CHUNK]
                prompts = [self.tok_encode(requests[i].args[0])[-room:] for i in part]
                outs = self.engine.generate(prompts, max_new_tokens=max_gen, stop=[s for s in until if s],
                                            stop_at_eos=True)
                for i, out in zip(part, outs):
                    text = postprocess_generated_text(self._tok.decode(out.token_ids), until, None)
                    results[i] = text
                    self.cache_hook.add_partial("generate_until", requests[i].args, text)
                bar.update(len(part))
        bar.close()
        return results  # type: ignore[return-value]


def cli_evaluate(argv: Sequence[str] | None = None) -> int:
    """lm-eval's command line with the model ``crossicl`` registered: ``argv`` are lm_eval's arguments (default
    sys.argv[1:])::

        python -m crossicl.integrations.lm_eval run --model crossicl --model_args path=DIR --tasks arc_easy
    """
    from lm_eval.__main__ import cli_evaluate as lm_eval_cli

    if argv is not None:
        sys.argv = [sys.argv[0], *argv]
    lm_eval_cli()
    return 0


__all__ = ["CrossiclLM", "cli_evaluate", "CHUNK"]
