"""Expanding the real Mistral v1 SentencePiece model with Czech pieces."""

from __future__ import annotations

import sentencepiece as spm
from transformers import AutoTokenizer

from colossal_lang.tokenizer.expand_sentencepiece import (apply_sentencepiece_plan, load_model_proto,
                                                          plan_sentencepiece_expansion)
from colossal_lang.tokenizer.init_tokenizer import main as init_main


def _processor(folder):
    return spm.SentencePieceProcessor(model_file=str(folder / "tokenizer.model"))


def test_new_pieces_score_below_all_existing(mistral_protected, mistral_spm_path):
    folder, plan = mistral_protected
    base = load_model_proto(mistral_spm_path.read_bytes())
    expanded = load_model_proto((folder / "tokenizer.model").read_bytes())
    lowest_existing = min(p.score for p in base.pieces if p.type == p.NORMAL)
    new_pieces = expanded.pieces[len(base.pieces):]
    assert len(new_pieces) == len(plan.new_tokens) > 1000
    assert all(p.score < lowest_existing and p.score != 0 for p in new_pieces)
    scores = [p.score for p in new_pieces]
    assert all(a > b for a, b in zip(scores, scores[1:]))  # distinct in float32: each new piece ranks below the last
    assert [(p.piece, p.score, p.type) for p in expanded.pieces[:len(base.pieces)]] == \
        [(p.piece, p.score, p.type) for p in base.pieces]
    assert len({p.piece for p in expanded.pieces}) == len(expanded.pieces)  # no duplicates


def test_protection_keeps_reference_ids_identical(mistral_protected, mistral_spm_path, english_reference, heldout_texts):
    folder, plan = mistral_protected
    base = spm.SentencePieceProcessor(model_file=str(mistral_spm_path))
    expanded = _processor(folder)
    assert plan.protected_dropped > 0
    assert base.encode(english_reference) == expanded.encode(english_reference)
    held_out = heldout_texts["en"]
    identical = sum(a == b for a, b in zip(base.encode(held_out), expanded.encode(held_out)))
    print(f"held-out English documents tokenized identically: {identical}/{len(held_out)}")
    assert identical / len(held_out) > 0.5


def test_every_added_word_piece_is_produced(mistral_protected):
    folder, plan = mistral_protected
    expanded = _processor(folder)
    word_pieces = [p for p in plan.added if p.startswith("▁") and len(p) > 1]
    assert len(word_pieces) > 500
    for piece in word_pieces:
        # With the dummy prefix, a word on its own is exactly "▁word".
        assert expanded.encode(piece[1:]) == [expanded.piece_to_id(piece)], piece


def test_hf_folder_matches_sentencepiece_and_round_trips(mistral_protected, heldout_texts):
    folder, plan = mistral_protected
    expanded = _processor(folder)
    fast = AutoTokenizer.from_pretrained(folder)
    assert len(fast) == 32000 + len(plan.new_tokens)
    assert (fast.bos_token_id, fast.eos_token_id, fast.unk_token_id) == (1, 2, 0)
    sample = heldout_texts["cs"][:150] + heldout_texts["en"][:20]
    same = sum(fast.encode(text, add_special_tokens=False) == expanded.encode(text) for text in sample)
    assert same >= len(sample) - 2
    for text in heldout_texts["cs"] + heldout_texts["en"]:
        assert expanded.decode(expanded.encode(text)) == text


def test_expanding_twice_changes_nothing(mistral_protected, czech_sentencepiece_dir, data_dir, tmp_path):
    folder, _ = mistral_protected
    plan = init_main(["--source_tokenizer_dir", str(folder), "--target_tokenizer_dir", str(tmp_path / "again"),
                      "--expand_from_tokenizer", str(czech_sentencepiece_dir),
                      "--reference_text", str(data_dir / "pretrain" / "en")])
    assert plan.new_tokens == []
    assert (tmp_path / "again" / "tokenizer.model").read_bytes() == (folder / "tokenizer.model").read_bytes()


def test_missing_characters_are_added_for_reachability(mistral_spm_path):
    base = load_model_proto(mistral_spm_path.read_bytes())
    existing = {p.piece for p in base.pieces}
    assert "ꙮ" not in existing  # a character Mistral only has as bytes
    plan = plan_sentencepiece_expansion(base, ["▁ꙮꙮ", "▁ꙮꙮ"])
    assert plan.added == ["▁ꙮꙮ"] and "ꙮ" in plan.intermediates
    processor = spm.SentencePieceProcessor(model_proto=apply_sentencepiece_plan(base, plan).SerializeToString())
    assert processor.encode("ꙮꙮ", out_type=str) == ["▁ꙮꙮ"]
