"""crossicl.Tokenizer: the Python surface, and golden comparisons with the `sentencepiece` package
(tokenizer.model) and HF `tokenizers` (tokenizer.json) on 1,000 seeded strings each."""
from __future__ import annotations

import json
import pathlib
import random
import string
import threading

import pytest

import crossicl

spm = pytest.importorskip("sentencepiece")
tokenizers = pytest.importorskip("tokenizers")

if not getattr(crossicl._crossicl, "has_engine", False):  # pragma: no cover - core-only builds
    pytest.skip("crossicl built without the engine", allow_module_level=True)

N_STRINGS = 1000
SEP = "\n__ggml_vocab_test__\n"
LLAMA3_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|"
    r"\s+(?!\S)|\s+"
)
QWEN2_REGEX = LLAMA3_REGEX.replace(r"\p{N}{1,3}", r"\p{N}")
SPECIALS = ["<|endoftext|>", "<|begin_of_text|>", "<|im_start|>", "<|im_end|>"]
EMOJI = ["\U0001F600", "\U0001F999", "\U0001F680", "\U0001F44D\U0001F3FD", "\U0001F636\u200d\U0001F32B\ufe0f", "\u2705",
         "\U0001F1EB\U0001F1F7", "\u2764\ufe0f"]
# Cyrillic, Arabic, Hebrew, Greek, Devanagari, Hiragana, Hangul, Thai.
SCRIPTS = ["\u043f\u0440\u0438\u0432\u0435\u0442", "\u0645\u0631\u062d\u0628\u0627", "\u05e9\u05dc\u05d5\u05dd",
           "\u03b3\u03b5\u03b9\u03ac", "\u0928\u092e\u0938\u094d\u0924\u0947", "\u3053\u3093\u306b\u3061\u306f",
           "\ud55c\uad6d\uc5b4", "\u0e44\u0e17\u0e22"]


# ---------------------------------------------------------------------------------------------- helpers


def random_texts(n: int, seed: int, specials: list[str] | None = None) -> list[str]:
    """Seeded strings mixing ASCII words, digits, punctuation, whitespace runs, CJK, emoji, accents, other
    scripts and contractions; the first few are edge cases (empty, spaces only, leading spaces)."""
    rng = random.Random(seed)
    atoms = [
        lambda: "".join(rng.choice(string.ascii_letters) for _ in range(rng.randint(1, 10))),
        lambda: rng.choice(["the", "The", "of", "and", "hello", "world", "Hello", "token", "llama", "is"]),
        lambda: "".join(rng.choice(string.digits) for _ in range(rng.randint(1, 7))),
        lambda: rng.choice([" ", "  ", "   ", "\t", "\t\t", "\n", "\n\n", "\r\n", " \n ", "\u3000", "\xa0", "\u2009"]),
        lambda: rng.choice(string.punctuation) * rng.randint(1, 3),
        lambda: "".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(1, 4))),
        lambda: rng.choice(EMOJI),
        lambda: rng.choice(["\xe9", "\xfc", "\xf1", "\xf8", "e\u0301", "\xc5", "\xdf", "\u0131", "\u03a9", "\xe7a"]),
        lambda: rng.choice(SCRIPTS),
        lambda: rng.choice(["'s", "'t", "'re", "'VE", "'M", "'ll", "'D", "n't", "'"]),
        lambda: rng.choice(["\xbd", "\xb2", "\u0661\u0662\u0663", "\u216b"]),
    ]
    if specials:
        atoms.append(lambda: rng.choice(specials))
    texts = ["", " ", "  ", "\n", " leading", "   leading", "trailing  ", "\t\ttab", "a"]
    while len(texts) < n:
        parts = [rng.choice(atoms)() for _ in range(rng.randint(1, 25))]
        texts.append("".join(p + (" " if rng.random() < 0.4 else "") for p in parts))
    return texts[:n]


def byte_offsets(text: str, char_offsets: list[tuple[int, int]]) -> list[tuple[int, int]]:
    starts = [0]
    for ch in text:
        starts.append(starts[-1] + len(ch.encode("utf-8")))
    return [(starts[b], starts[e]) for b, e in char_offsets]


def llama_json_from_model(model_path: pathlib.Path, out: pathlib.Path) -> pathlib.Path:
    """HF tokenizer.json equivalent to a SentencePiece BPE model: its pieces as vocab, merges ranked by the score
    of the merged piece (merges written as "a b" strings)."""
    sp = spm.SentencePieceProcessor(model_file=str(model_path))
    n = sp.get_piece_size()
    pieces = [sp.id_to_piece(i) for i in range(n)]
    vocab = {p: i for i, p in enumerate(pieces)}
    normal = [not (sp.is_control(i) or sp.is_unknown(i) or sp.is_byte(i)) for i in range(n)]
    merges = []
    for i, p in enumerate(pieces):
        if not normal[i]:
            continue
        for k in range(1, len(p)):
            left, right = vocab.get(p[:k]), vocab.get(p[k:])
            if left is not None and right is not None and normal[left] and normal[right]:
                merges.append((-sp.get_score(i), i, left, right))
    merges.sort()
    special = [i for i in range(n) if sp.is_control(i) or sp.is_unknown(i)]
    doc = {
        "version": "1.0",
        "added_tokens": [
            {"id": i, "content": pieces[i], "single_word": False, "lstrip": False, "rstrip": False,
             "normalized": False, "special": True}
            for i in special
        ],
        "normalizer": {"type": "Sequence", "normalizers": [
            {"type": "Prepend", "prepend": "\u2581"},
            {"type": "Replace", "pattern": {"String": " "}, "content": "\u2581"}]},
        "pre_tokenizer": None,
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": pieces[sp.bos_id()], "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {pieces[sp.bos_id()]: {"id": pieces[sp.bos_id()], "ids": [sp.bos_id()],
                                                     "tokens": [pieces[sp.bos_id()]]}},
        },
        "decoder": {"type": "Sequence", "decoders": [
            {"type": "Replace", "pattern": {"String": "\u2581"}, "content": " "},
            {"type": "ByteFallback"}, {"type": "Fuse"},
            {"type": "Strip", "content": " ", "start": 1, "stop": 0}]},
        "model": {"type": "BPE", "dropout": None, "unk_token": pieces[sp.unk_id()], "continuing_subword_prefix": None,
                  "end_of_word_suffix": None, "fuse_unk": True, "byte_fallback": True, "vocab": vocab,
                  "merges": [f"{pieces[l]} {pieces[r]}" for _, _, l, r in merges]},
    }
    out.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return out


def train_byte_level(path: pathlib.Path, kind: str) -> pathlib.Path:
    """A small byte-level BPE trained with HF tokenizers on generated text, saved as tokenizer.json."""
    from tokenizers import Regex, decoders, models, pre_tokenizers, processors, trainers

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    pre = {
        "gpt2": pre_tokenizers.ByteLevel(add_prefix_space=False),
        "gpt2_prefix_space": pre_tokenizers.ByteLevel(add_prefix_space=True),
        "llama3": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_REGEX), "isolated"), byte_level]),
        "qwen2": pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(QWEN2_REGEX), "isolated"), byte_level]),
        "smollm2": pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True),
                                            pre_tokenizers.ByteLevel(add_prefix_space=False)]),
    }[kind]
    tok = tokenizers.Tokenizer(models.BPE(ignore_merges=kind == "llama3"))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=800, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(random_texts(3000, seed=11), trainer)
    if kind == "llama3":
        bos = tok.token_to_id("<|begin_of_text|>")
        tok.post_processor = processors.TemplateProcessing(
            single="<|begin_of_text|> $A", special_tokens=[("<|begin_of_text|>", bos)])
    out = path / f"{kind}.json"
    tok.save(str(out))
    return out


# ---------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def llama_dir(models_dir: pathlib.Path) -> pathlib.Path:
    return models_dir / "llama2"


@pytest.fixture(scope="module")
def llama_json(llama_dir: pathlib.Path, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    """The LLaMA-2 tokenizer.json, rebuilt from tokenizer.model (../shared's llama2/tokenizer.json has another
    vocabulary: its ids do not match tokenizer.model)."""
    return llama_json_from_model(llama_dir / "tokenizer.model", tmp_path_factory.mktemp("llama") / "tokenizer.json")


@pytest.fixture(scope="module")
def sp_tok(llama_dir: pathlib.Path) -> crossicl.Tokenizer:
    return crossicl.Tokenizer(llama_dir / "tokenizer.model")


def vectors(llama_dir: pathlib.Path) -> list[tuple[str, list[int]]]:
    inputs = (llama_dir / "ggml-vocab-llama-spm.gguf.inp").read_text(encoding="utf-8").split(SEP)
    outputs = (llama_dir / "ggml-vocab-llama-spm.gguf.out").read_text(encoding="utf-8").split("\n")
    if inputs and inputs[-1] == "":
        inputs.pop()
    return [(t, [int(x) for x in o.split()]) for t, o in zip(inputs, outputs)]


# ---------------------------------------------------------------------------------------------- golden


@pytest.mark.parametrize("kind", ["model", "json"])
def test_llama_vectors(kind: str, llama_dir: pathlib.Path, llama_json: pathlib.Path) -> None:
    tok = crossicl.Tokenizer(llama_dir / "tokenizer.model" if kind == "model" else llama_json)
    cases = vectors(llama_dir)
    assert len(cases) == 46
    for text, expected in cases:
        assert tok.encode(text, bos=False) == expected, text
        assert tok.decode(expected) == text


@pytest.mark.parametrize("model", ["llama2/tokenizer.model", "stories260K/tok512.model"])
def test_sentencepiece_matches_python_package(model: str, models_dir: pathlib.Path) -> None:
    ref = spm.SentencePieceProcessor(model_file=str(models_dir / model))
    tok = crossicl.Tokenizer(models_dir / model)
    assert (tok.vocab_size, tok.bos_id, tok.eos_id) == (ref.get_piece_size(), ref.bos_id(), ref.eos_id())
    texts = random_texts(N_STRINGS, seed=1)
    for text in texts:
        ids = ref.encode(text, add_bos=True)
        assert tok.encode(text) == ids, text
        assert tok.decode(ids) == ref.decode(ids), text
    assert tok.encode_batch(texts, bos=False) == ref.encode(texts)


@pytest.mark.parametrize("model", ["llama2/tokenizer.model", "stories260K/tok512.model"])
def test_from_vocab_matches_sentencepiece(model: str, models_dir: pathlib.Path) -> None:
    # The arrays GGUF stores for a SentencePiece model: pieces, scores and token types.
    ref = spm.SentencePieceProcessor(model_file=str(models_dir / model))
    n = ref.get_piece_size()
    types = [2 if ref.is_unknown(i) else 3 if ref.is_control(i) else 6 if ref.is_byte(i) else 5 if ref.is_unused(i)
             else 1 for i in range(n)]
    tok = crossicl.Tokenizer.from_vocab([ref.id_to_piece(i) for i in range(n)], model="llama",
                                        scores=[ref.get_score(i) for i in range(n)], token_types=types,
                                        bos_id=ref.bos_id(), eos_id=ref.eos_id(), unk_id=ref.unk_id())
    assert (tok.vocab_size, tok.bos_id, tok.eos_id) == (n, ref.bos_id(), ref.eos_id())
    texts = random_texts(N_STRINGS, seed=7)
    if "tok512" in model:
        # tok512.model folds runs of spaces (remove_extra_whitespaces), a normalizer option GGUF arrays lack.
        texts = [t for t in texts if not t.startswith(" ") and not t.endswith(" ") and "  " not in t]
        assert len(texts) > 300
    assert tok.encode_batch(texts) == [ref.encode(t, add_bos=True) for t in texts]
    for text in texts:
        assert tok.decode(tok.encode(text)) == ref.decode(ref.encode(text)), text


def test_from_vocab_byte_level(tmp_path: pathlib.Path) -> None:
    # GGUF "gpt2" vocabularies: tokens, merges and the pre-tokenizer name of a LLaMA-3 style tokenizer.
    path = train_byte_level(tmp_path, "llama3")
    doc = json.loads(path.read_text(encoding="utf-8"))
    vocab = doc["model"]["vocab"]
    tokens = [""] * len(vocab)
    for piece, i in vocab.items():
        tokens[i] = piece
    special = {a["id"] for a in doc["added_tokens"]}
    merges = [m if isinstance(m, str) else " ".join(m) for m in doc["model"]["merges"]]
    bos = vocab["<|begin_of_text|>"]
    tok = crossicl.Tokenizer.from_vocab(tokens, model="gpt2", pre="llama-bpe", merges=merges,
                                        token_types=[3 if i in special else 1 for i in range(len(tokens))],
                                        bos_id=bos, eos_id=vocab["<|endoftext|>"])
    ref = crossicl.Tokenizer(path)
    texts = random_texts(N_STRINGS, seed=8, specials=SPECIALS)
    batch = ref.encode_batch(texts)
    assert tok.encode_batch(texts) == batch
    assert [tok.decode(ids, keep_special=True) for ids in ref.encode_batch(texts, bos=False)] == texts
    assert [tok.decode(ids) for ids in batch] == [ref.decode(ids) for ids in batch]
    with pytest.raises(crossicl.LoadError, match="bert"):
        crossicl.Tokenizer.from_vocab(tokens, model="bert")


def check_against_hf(path: pathlib.Path, texts: list[str], offsets: bool) -> None:
    ref = tokenizers.Tokenizer.from_file(str(path))
    tok = crossicl.Tokenizer(path)
    assert tok.vocab_size == ref.get_vocab_size(with_added_tokens=True)
    for text in texts:
        enc = ref.encode(text)
        assert tok.encode(text) == enc.ids, text
        assert tok.encode(text, bos=False) == ref.encode(text, add_special_tokens=False).ids, text
        assert tok.decode(enc.ids) == ref.decode(enc.ids), text
        assert tok.decode(enc.ids, keep_special=True) == ref.decode(enc.ids, skip_special_tokens=False), text
        if ref.decode(enc.ids) == text:
            assert tok.decode(tok.encode(text)) == text
        if offsets:
            ids, offs = tok.encode_with_offsets(text)
            assert ids == enc.ids
            assert offs == byte_offsets(text, enc.offsets), text


def test_llama_json_matches_hf(llama_json: pathlib.Path, sp_tok: crossicl.Tokenizer) -> None:
    texts = random_texts(N_STRINGS, seed=2, specials=["<s>", "</s>"])
    check_against_hf(llama_json, texts, offsets=True)
    # The rebuilt json and tokenizer.model agree wherever no special-token text occurs.
    tok = crossicl.Tokenizer(llama_json)
    plain = [t for t in texts if "<s>" not in t and "</s>" not in t]
    assert tok.encode_batch(plain) == sp_tok.encode_batch(plain)


def test_shared_tokenizer_json_matches_hf(llama_dir: pathlib.Path) -> None:
    # ../shared's tokenizer.json: LLaMA-2 style BPE (Prepend/Replace normalizer, byte fallback, merges as "a b").
    check_against_hf(llama_dir / "tokenizer.json", random_texts(N_STRINGS, seed=3, specials=["<s>", "</s>"]),
                     offsets=True)


@pytest.mark.parametrize("kind", ["gpt2", "gpt2_prefix_space", "llama3", "qwen2", "smollm2"])
def test_byte_level_matches_hf(kind: str, tmp_path: pathlib.Path) -> None:
    path = train_byte_level(tmp_path, kind)
    check_against_hf(path, random_texts(N_STRINGS, seed=4, specials=SPECIALS), offsets=False)
    tok = crossicl.Tokenizer(path)
    if kind == "llama3":
        assert tok.bos_id == tok.encode("")[0]
    else:
        assert tok.encode("") == []
        assert tok.eos_id == tokenizers.Tokenizer.from_file(str(path)).token_to_id("<|endoftext|>")


@pytest.mark.parametrize("behavior", ["removed", "isolated", "merged_with_previous", "merged_with_next", "contiguous"])
def test_split_string_behaviors_match_hf(behavior: str, tmp_path: pathlib.Path) -> None:
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit() if behavior == "removed" else pre_tokenizers.Split("'", behavior),
        pre_tokenizers.Split(" ", behavior),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=500, show_progress=False, special_tokens=SPECIALS[:1],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(random_texts(2000, seed=12), trainer)
    path = tmp_path / "split.json"
    tok.save(str(path))
    check_against_hf(path, random_texts(N_STRINGS // 2, seed=13, specials=SPECIALS[:1]), offsets=False)


@pytest.mark.parametrize("scheme", ["always", "first", "never"])
def test_metaspace_unk_matches_hf(scheme: str, tmp_path: pathlib.Path) -> None:
    # SentencePiece-like BPE without byte fallback: Metaspace pre-tokenizer and decoder, <unk> fused.
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = tokenizers.Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(prepend_scheme=scheme)
    tok.decoder = decoders.Metaspace(prepend_scheme=scheme)
    trainer = trainers.BpeTrainer(vocab_size=400, show_progress=False, special_tokens=["<unk>", "<s>", "</s>"],
                                  limit_alphabet=60)
    tok.train_from_iterator(random_texts(2000, seed=14), trainer)
    path = tmp_path / "metaspace.json"
    tok.save(str(path))
    check_against_hf(path, random_texts(N_STRINGS // 2, seed=15, specials=["<s>", "</s>"]), offsets=True)


def test_merges_as_pairs(tmp_path: pathlib.Path) -> None:
    # Newer tokenizer.json files store merges as [a, b] pairs.
    path = train_byte_level(tmp_path, "gpt2")
    doc = json.loads(path.read_text(encoding="utf-8"))
    doc["model"]["merges"] = [m.split(" ") if isinstance(m, str) else m for m in doc["model"]["merges"]]
    pairs = tmp_path / "pairs.json"
    pairs.write_text(json.dumps(doc), encoding="utf-8")
    texts = random_texts(200, seed=5)
    assert crossicl.Tokenizer(pairs).encode_batch(texts) == crossicl.Tokenizer(path).encode_batch(texts)


# ---------------------------------------------------------------------------------------------- surface


def test_surface(sp_tok: crossicl.Tokenizer, llama_dir: pathlib.Path) -> None:
    assert isinstance(crossicl.Tokenizer.from_file(str(llama_dir / "tokenizer.model")), crossicl.Tokenizer)
    assert (sp_tok.vocab_size, sp_tok.bos_id, sp_tok.eos_id, len(sp_tok)) == (32000, 1, 2, 32000)
    assert sp_tok.piece(15043) == "\u2581Hello"
    assert sp_tok.encode("Hello world") == [1, 15043, 3186]
    assert sp_tok.encode("Hello world", bos=False, eos=True) == [15043, 3186, 2]
    assert sp_tok.encode(b"Hello world", bos=False) == [15043, 3186]
    assert sp_tok.encode("") == [1]
    assert sp_tok.encode("", bos=False) == []
    ids, offsets = sp_tok.encode_with_offsets("Hello world")
    assert ids == [1, 15043, 3186]
    assert offsets == [(0, 0), (0, 5), (5, 11)]
    assert sp_tok.decode([1, 15043, 3186, 2]) == "Hello world"
    assert sp_tok.decode([1, 15043, 2], keep_special=True) == "<s> Hello</s>"
    with pytest.raises(TypeError):
        sp_tok.encode("Hello", False)  # options are keyword-only
    with pytest.raises(TypeError):
        sp_tok.decode([1], True)


def test_errors(sp_tok: crossicl.Tokenizer, tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="offset 5"):
        sp_tok.encode(b"Hello\xff")
    with pytest.raises(crossicl.InvalidArgument, match=r"32000.*vocab size 32000"):
        sp_tok.decode([1, 32000])
    with pytest.raises(ValueError, match="-5"):
        sp_tok.piece(-5)
    missing = tmp_path / "missing.model"
    with pytest.raises(crossicl.LoadError, match="missing.model"):
        crossicl.Tokenizer(missing)
    wordpiece = tmp_path / "wordpiece.json"
    wordpiece.write_text(json.dumps({"model": {"type": "WordPiece", "vocab": {"a": 0}}}))
    with pytest.raises(crossicl.LoadError, match="WordPiece") as err:
        crossicl.Tokenizer(wordpiece)
    assert "wordpiece.json" in str(err.value)
    assert isinstance(err.value, RuntimeError)
    broken = tmp_path / "broken.json"
    broken.write_text('{"model": ')
    with pytest.raises(crossicl.LoadError, match="broken.json"):
        crossicl.Tokenizer(broken)
    regex = tmp_path / "regex.json"
    regex.write_text(json.dumps({"pre_tokenizer": {"type": "Split", "pattern": {"Regex": "[a-z]+"}},
                                 "model": {"type": "BPE", "vocab": {"a": 0}, "merges": []}}))
    with pytest.raises(crossicl.LoadError, match="not one of the supported"):
        crossicl.Tokenizer(regex)


def test_threads_and_batch(sp_tok: crossicl.Tokenizer, llama_json: pathlib.Path) -> None:
    texts = random_texts(400, seed=6)
    json_tok = crossicl.Tokenizer(llama_json)
    for tok in (sp_tok, json_tok):
        expected = [tok.encode(t) for t in texts]
        assert tok.encode_batch(texts) == expected
        assert tok.encode_batch(texts, bos=False) == [e[1:] for e in expected]
        results: dict[int, list[list[int]]] = {}

        def work(k: int) -> None:
            results[k] = [tok.encode(t) for t in texts]

        threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert all(results[k] == expected for k in range(4))
    with pytest.raises(ValueError, match="UTF-8"):
        sp_tok.encode_batch(["ok"] * 100 + [b"bad \xc3"])
