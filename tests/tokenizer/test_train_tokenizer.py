"""Training target-language tokenizers on the embedded Czech corpus."""

from __future__ import annotations

import json

from tokenizers import Tokenizer
from transformers import AutoTokenizer

from colossal_lang.tokenizer.corpus import sample_sentences
from colossal_lang.tokenizer.surface import has_target_script_letter, token_text
from colossal_lang.tokenizer.train_tokenizer import keep_target_script_byte_level
from tests.tokenizer.conftest import SMALL_VOCAB


def test_byte_level_bpe_keeps_base_pre_tokenizer_and_special_ids(czech_byte_level_dir, smollm2_dir, smollm2_tokenizer, heldout_texts):
    trained = json.loads((czech_byte_level_dir / "tokenizer.json").read_text())
    base = json.loads((smollm2_dir / "tokenizer.json").read_text())
    assert trained["pre_tokenizer"] == base["pre_tokenizer"] and trained["normalizer"] == base["normalizer"]
    assert len(trained["model"]["vocab"]) == SMALL_VOCAB
    for token in base["added_tokens"]:
        assert trained["model"]["vocab"][token["content"]] == token["id"]
    czech = heldout_texts["cs"][:100]
    tokenizer = AutoTokenizer.from_pretrained(czech_byte_level_dir)
    trained_count = sum(len(tokenizer.encode(text)) for text in czech)
    base_count = sum(len(smollm2_tokenizer.encode(text)) for text in czech)
    assert trained_count < 0.8 * base_count  # even 3k Czech tokens beat 49k English-centric ones
    assert all(tokenizer.decode(tokenizer.encode(text)) == text for text in czech)


def test_target_script_only_keeps_czech_pieces_and_their_parts(czech_byte_level_dir):
    tokenizer = Tokenizer.from_file(str(czech_byte_level_dir / "tokenizer.json"))
    filtered = keep_target_script_byte_level(tokenizer)
    config = json.loads(filtered.to_str())
    vocab = config["model"]["vocab"]
    assert sorted(vocab.values()) == list(range(len(vocab)))
    assert 256 < len(vocab) < SMALL_VOCAB
    merge_parts = {part for merge in config["model"]["merges"] for part in merge}
    for token in vocab:
        if len(token) > 1 and token not in merge_parts and not token.startswith("<|") and "<" not in token:
            assert has_target_script_letter(token_text(token, "byte_level") or ""), token
    assert "Ġthe" not in vocab and "ĠjeÅ¡tÄĽ" in vocab  # " ještě" survives, " the" does not
    text = "Příliš žluťoučký kůň úpěl ďábelské ódy."
    assert filtered.decode(filtered.encode(text).ids) == text


def test_sentencepiece_training_writes_loadable_folder(czech_sentencepiece_dir):
    import sentencepiece as spm

    processor = spm.SentencePieceProcessor(model_file=str(czech_sentencepiece_dir / "tokenizer.model"))
    assert processor.get_piece_size() == SMALL_VOCAB
    assert processor.piece_to_id("<0xC3>") > 0  # byte fallback, as LLaMA-style models have
    tokenizer = AutoTokenizer.from_pretrained(czech_sentencepiece_dir)
    text = "Jsem bezvýhradný ateista"
    assert tokenizer.encode(text, add_special_tokens=False) == processor.encode(text)


def test_sentence_sampling_is_seeded_and_bounded():
    texts = [f"řádek {i}\nline {i}" for i in range(100)]
    first = sample_sentences(texts, 50, seed=1)
    assert len(first) == 50 and first == sample_sentences(texts, 50, seed=1)
    assert first != sample_sentences(texts, 50, seed=2)
    assert len(sample_sentences(texts, None)) == 200
