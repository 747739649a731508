"""Every base family users adapt, expanded with real Czech vocabulary: what must hold for each (issue 14).

Old ids (added, special and reserved tokens included) never move; new ids follow the highest old one;
text round-trips wherever the base round-trips; English keeps its ids; Czech compresses better; the
chat template renders and tokenizes as before. Unsupported tokenizers are refused before any output.
"""

from __future__ import annotations

import json

import pytest
from transformers import AutoTokenizer

from colossal_lang.errors import InputError
from colossal_lang.tokenizer.family import tokenizer_family
from colossal_lang.tokenizer.init_tokenizer import main as init_main
from tests.families.families import FAMILIES

CONVERSATION = [{"role": "user", "content": "What is the state of the union?"},
                {"role": "assistant", "content": "The state of our union is strong."}]


def _load(folder):
    return AutoTokenizer.from_pretrained(folder)


def _round_trips(tokenizer, texts):
    """Which texts come back unchanged from decode(encode(text)) (encoded as one batch: fast)."""
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [tokenizer.decode(ids) == text for ids, text in zip(encoded, texts)]


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_is_recognised(name, base_dir):
    assert tokenizer_family(base_dir(name)) == FAMILIES[name]


@pytest.mark.slow
# gpt-oss (200k ids, ~25 s to expand) runs in `make test-extended`: it is not one of the bases the README names,
# and the default suite must stay inside CI's 15 minutes.
@pytest.mark.parametrize("name", [name if name != "gptoss" else pytest.param(name, marks=pytest.mark.extended)
                                  for name in FAMILIES])
def test_expansion_keeps_every_id_and_round_trips(name, expanded, heldout_texts, english_reference):
    base_path, expanded_path, plan = expanded(name)
    base, grown = _load(base_path), _load(expanded_path)
    base_vocab, grown_vocab = base.get_vocab(), grown.get_vocab()
    # Every old token (added, special, reserved) keeps its id; new ones take the ids after the highest old id.
    assert {token: grown_vocab.get(token) for token in base_vocab} == base_vocab
    new_ids = sorted(token_id for token, token_id in grown_vocab.items() if token not in base_vocab)
    assert len(new_ids) == len(plan.new_tokens) > 300
    assert new_ids == list(range(max(base_vocab.values()) + 1, max(base_vocab.values()) + 1 + len(new_ids)))
    assert len(grown) == max(grown_vocab.values()) + 1
    for role in ("bos_token_id", "eos_token_id", "pad_token_id", "unk_token_id"):
        assert getattr(grown, role) == getattr(base, role), role
    assert grown.all_special_ids == base.all_special_ids
    # Round trip wherever the base round-trips (held-out Czech and English).
    for language in ("cs", "en"):
        texts = heldout_texts[language]
        broken = [text[:60] for text, before, after in zip(texts, _round_trips(base, texts), _round_trips(grown, texts))
                  if before and not after]
        assert not broken, broken[:3]
    # The reference English keeps its ids exactly (with the special tokens the tokenizer adds itself).
    assert base(english_reference)["input_ids"] == grown(english_reference)["input_ids"]
    # Czech compresses better.
    czech_before, czech_after = (sum(map(len, t(heldout_texts["cs"])["input_ids"])) for t in (base, grown))
    assert czech_after < 0.97 * czech_before


@pytest.mark.slow
@pytest.mark.parametrize("name", [name for name in FAMILIES if name not in ("gptoss", "llama2", "mistral")])
def test_chat_template_renders_and_tokenizes_as_before(name, expanded):
    base_path, expanded_path, _ = expanded(name)
    base, grown = _load(base_path), _load(expanded_path)
    assert base.chat_template and grown.chat_template == base.chat_template
    rendered = base.apply_chat_template(CONVERSATION, tokenize=False)
    assert grown.apply_chat_template(CONVERSATION, tokenize=False) == rendered
    assert grown.apply_chat_template(CONVERSATION) == base.apply_chat_template(CONVERSATION)


@pytest.mark.slow
def test_tokenizer_model_and_tokenizer_json_come_out_agreeing(expanded, heldout_texts):
    """The Hugging Face folder layout: both files updated, and slow and fast give the same ids (dummy prefix too)."""
    from transformers import LlamaTokenizer, LlamaTokenizerFast

    base_path, expanded_path, plan = expanded("mistral")
    slow, fast = LlamaTokenizer.from_pretrained(expanded_path), LlamaTokenizerFast.from_pretrained(expanded_path)
    assert len(slow) == len(fast) == 32000 + len(plan.new_tokens)
    texts = heldout_texts["en"] + heldout_texts["cs"]
    assert all(slow.encode(text) == fast.encode(text) for text in texts)
    assert fast.convert_ids_to_tokens(fast.encode("Gentlemen"))[:2] == ["<s>", "▁Gent"]  # the dummy prefix is there
    auto = AutoTokenizer.from_pretrained(expanded_path)
    base = AutoTokenizer.from_pretrained(base_path)
    same = sum(auto.encode(text) == base.encode(text) for text in heldout_texts["en"])
    assert same > 0.7 * len(heldout_texts["en"])


@pytest.mark.slow
@pytest.mark.parametrize("name", ["llama2", "gemma3"])
def test_sentencepiece_style_tokenizer_json_can_be_swapped(name, base_dir, czech_sentencepiece, tmp_path):
    counts = init_main(["--source_tokenizer_dir", str(base_dir(name)), "--target_tokenizer_dir", str(tmp_path / "swap"),
                        "--expand_from_tokenizer", str(czech_sentencepiece), "--swap"])
    alignment = json.loads((tmp_path / "swap" / "token_alignment.json").read_text())["new_to_old"]
    base = _load(base_dir(name))
    # `▁a` and byte pieces `<0xC3>` match by the bytes they stand for; most of a 3000-piece Czech vocabulary exists.
    assert counts["exact_matches"] > 1000
    target = _load(tmp_path / "swap")
    for new_id in ("300", "1000"):
        if new_id in alignment:
            new_piece = target.convert_ids_to_tokens(int(new_id))
            assert base.convert_ids_to_tokens(alignment[new_id]) == new_piece


def _wordpiece_folder(path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.WordPiece({"[UNK]": 0, "a": 1, "##b": 2}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path.mkdir()
    tokenizer.save(str(path / "tokenizer.json"))
    return path


def _whitespace_bpe_folder(path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    tokenizer = Tokenizer(models.BPE({"a": 0, "b": 1, "ab": 2}, [("a", "b")]))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    path.mkdir()
    tokenizer.save(str(path / "tokenizer.json"))
    return path


def _clashing_added_tokens_folder(base_dir, path):
    config = json.loads((base_dir("llama2") / "tokenizer.json").read_text(encoding="utf-8"))
    config["added_tokens"].append({**config["added_tokens"][0], "content": "<extra>", "id": 5})  # id 5 is <0x02>
    path.mkdir()
    (path / "tokenizer.json").write_text(json.dumps(config), encoding="utf-8")
    return path


def _unigram_folder(data_dir, path):
    from colossal_lang.tokenizer.train_tokenizer import main as train_main

    train_main(["--data_input_dirs", str(data_dir / "pretrain" / "cs" / "gnome_help.jsonl"), "--model_type", "unigram",
                "--vocab_size", "500", "--output_dir", str(path)])
    return path


@pytest.mark.parametrize("kind, reason", [
    ("wordpiece", "a WordPiece tokenizer.json"),
    ("whitespace_bpe", "neither byte-level"),
    ("clashing_added", "share id 5"),
    ("unigram", "a SentencePiece UNIGRAM model"),
])
def test_unsupported_tokenizers_are_refused_before_any_output(kind, reason, base_dir, data_dir, tmp_path):
    source = {"wordpiece": lambda p: _wordpiece_folder(p), "whitespace_bpe": lambda p: _whitespace_bpe_folder(p),
              "clashing_added": lambda p: _clashing_added_tokens_folder(base_dir, p),
              "unigram": lambda p: _unigram_folder(data_dir, p)}[kind](tmp_path / "source")
    pieces = tmp_path / "pieces.jsonl"
    pieces.write_text('{"piece": " kůň"}\n', encoding="utf-8")
    output = tmp_path / "out"
    with pytest.raises(InputError, match=reason) as error:
        init_main(["--source_tokenizer_dir", str(source), "--target_tokenizer_dir", str(output),
                   "--expand_tokens_file", str(pieces), "--no_protect"])
    assert "unsupported tokenizer" in str(error.value) and str(source) in str(error.value)
    assert not output.exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())
