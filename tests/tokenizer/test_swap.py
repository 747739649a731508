"""Vocabulary swap: token_alignment.json maps new ids to old ones by surface form."""

from __future__ import annotations

import json

from transformers import AutoTokenizer

from colossal_lang.tokenizer.init_tokenizer import main as init_main


def _swap(source, target, output, extra=()):
    init_main(["--source_tokenizer_dir", str(source), "--target_tokenizer_dir", str(output),
               "--expand_from_tokenizer", str(target), "--swap", *extra])
    alignment = json.loads((output / "token_alignment.json").read_text())
    return alignment, {int(k): v for k, v in alignment["new_to_old"].items()}


def test_byte_level_swap_maps_same_forms(smollm2_dir, smollm2_tokenizer, czech_byte_level_dir, tmp_path):
    alignment, new_to_old = _swap(smollm2_dir, czech_byte_level_dir, tmp_path / "swap")
    new = AutoTokenizer.from_pretrained(tmp_path / "swap")
    assert alignment["source_tokenizer"] == str(smollm2_dir)
    the_new, the_old = new.convert_tokens_to_ids("Ġse"), smollm2_tokenizer.convert_tokens_to_ids("Ġse")
    assert the_new != new.unk_token_id
    assert new_to_old[the_new] == the_old
    assert all(new_to_old[i] == i for i in smollm2_tokenizer.all_special_ids)
    assert new.chat_template == smollm2_tokenizer.chat_template
    assert len(new_to_old) > 1000 and len(new) == 3000


def test_cross_family_swap_matches_spaces_and_bytes(smollm2_dir, smollm2_tokenizer, mistral_spm_path, czech_sentencepiece_dir, tmp_path):
    import sentencepiece as spm

    czech = spm.SentencePieceProcessor(model_file=str(czech_sentencepiece_dir / "tokenizer.model"))
    _, new_to_old = _swap(smollm2_dir, czech_sentencepiece_dir, tmp_path / "cross")
    assert new_to_old[czech.piece_to_id("▁se")] == smollm2_tokenizer.convert_tokens_to_ids("Ġse")
    assert new_to_old[czech.piece_to_id("<0xC3>")] == smollm2_tokenizer.convert_tokens_to_ids("Ã")
    _, from_mistral = _swap(mistral_spm_path.parent, czech_sentencepiece_dir, tmp_path / "mistral")
    mistral = spm.SentencePieceProcessor(model_file=str(mistral_spm_path))
    assert czech.piece_to_id("▁se") != czech.unk_id() and mistral.piece_to_id("▁se") != mistral.unk_id()
    assert from_mistral[czech.piece_to_id("▁se")] == mistral.piece_to_id("▁se")
    assert from_mistral[czech.piece_to_id("<s>")] == 1


def test_bilingual_dictionary_adds_translations(smollm2_dir, smollm2_tokenizer, czech_byte_level_dir, tmp_path):
    dictionary = tmp_path / "dict.tsv"
    dictionary.write_text("když\twhen\nproto\ttherefore\n", encoding="utf-8")
    _, plain = _swap(smollm2_dir, czech_byte_level_dir, tmp_path / "plain")
    _, with_dict = _swap(smollm2_dir, czech_byte_level_dir, tmp_path / "dict", ["--bilingual_dictionary", str(dictionary)])
    new = AutoTokenizer.from_pretrained(tmp_path / "dict")
    kdyz = new.encode(" když")
    assert len(kdyz) == 1 and kdyz[0] not in plain
    assert with_dict[kdyz[0]] == smollm2_tokenizer.encode(" when")[0]
