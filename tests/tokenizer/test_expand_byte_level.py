"""Expanding SmolLM2's byte-level BPE with Czech vocabulary and merges."""

from __future__ import annotations

import json

from tokenizers import Tokenizer
from transformers import AutoTokenizer

from colossal_lang.tokenizer.expand_byte_level import plan_byte_level_expansion
from colossal_lang.tokenizer.init_tokenizer import main as init_main
from colossal_lang.tokenizer.surface import token_text


def _fast(folder):
    return Tokenizer.from_file(str(folder / "tokenizer.json"))


def test_protection_keeps_reference_ids_identical(smollm2_protected, smollm2_dir, english_reference, heldout_texts):
    folder, plan = smollm2_protected
    base, expanded = _fast(smollm2_dir), _fast(folder)
    assert plan.protected_dropped > 0 and len(plan.added) > 1000
    for before, after in zip(base.encode_batch(english_reference), expanded.encode_batch(english_reference)):
        assert before.ids == after.ids
    held_out = heldout_texts["en"]
    identical = sum(a.ids == b.ids for a, b in zip(base.encode_batch(held_out), expanded.encode_batch(held_out)))
    print(f"held-out English documents tokenized identically: {identical}/{len(held_out)}")
    assert identical / len(held_out) > 0.5


def test_every_added_token_is_produced_from_its_own_text(smollm2_protected):
    folder, plan = smollm2_protected
    expanded = _fast(folder)
    checked = 0
    for piece in plan.added:
        text = token_text(piece, "byte_level")
        if text is None:  # a partial UTF-8 sequence cannot be written as text on its own
            continue
        assert expanded.encode(text).ids == [expanded.token_to_id(piece)], (piece, text)
        checked += 1
    assert checked > 0.95 * len(plan.added)


def test_new_ids_follow_base_and_specials_are_unchanged(smollm2_protected, smollm2_dir, smollm2_tokenizer):
    folder, plan = smollm2_protected
    base_vocab = json.loads((smollm2_dir / "tokenizer.json").read_text())["model"]["vocab"]
    expanded_json = json.loads((folder / "tokenizer.json").read_text())
    assert all(expanded_json["model"]["vocab"][token] == index for token, index in base_vocab.items())
    assert plan.first_new_id == len(base_vocab)
    expanded = AutoTokenizer.from_pretrained(folder)
    assert len(expanded) == len(base_vocab) + len(plan.new_tokens)
    assert expanded.all_special_tokens == smollm2_tokenizer.all_special_tokens
    assert expanded.all_special_ids == smollm2_tokenizer.all_special_ids
    assert expanded.chat_template == smollm2_tokenizer.chat_template
    merges = expanded_json["model"]["merges"]
    vocab = expanded_json["model"]["vocab"]
    assert all(a in vocab and b in vocab and a + b in vocab for a, b in merges[-len(plan.new_tokens):])
    # The slow files agree with tokenizer.json.
    assert len(json.loads((folder / "vocab.json").read_text())) == len(vocab)
    assert len((folder / "merges.txt").read_text().splitlines()) == len(merges) + 1


def test_round_trip_and_czech_compression(smollm2_protected, smollm2_tokenizer, heldout_texts):
    folder, _ = smollm2_protected
    expanded = AutoTokenizer.from_pretrained(folder)
    for text in heldout_texts["cs"] + heldout_texts["en"]:
        assert expanded.decode(expanded.encode(text, add_special_tokens=False)) == text
    czech = heldout_texts["cs"]
    before = sum(len(smollm2_tokenizer.encode(t)) for t in czech)
    after = sum(len(expanded.encode(t)) for t in czech)
    assert after < 0.75 * before


def test_expanding_twice_changes_nothing(smollm2_protected, czech_byte_level_dir, data_dir, tmp_path):
    folder, _ = smollm2_protected
    again = tmp_path / "again"
    plan = init_main(["--source_tokenizer_dir", str(folder), "--target_tokenizer_dir", str(again),
                      "--expand_from_tokenizer", str(czech_byte_level_dir),
                      "--reference_text", str(data_dir / "pretrain" / "en")])
    assert plan.new_tokens == [] and plan.added == []
    assert json.loads((again / "tokenizer.json").read_text()) == json.loads((folder / "tokenizer.json").read_text())


def test_expand_tokens_file_adds_reachable_words(smollm2_dir, tmp_path, english_reference):
    pieces = tmp_path / "pieces.jsonl"
    words = [" žluťoučký", "▁přílišný", " the", " žluťoučký"]
    pieces.write_text("".join(json.dumps({"piece": w}, ensure_ascii=False) + "\n" for w in words), encoding="utf-8")
    output = tmp_path / "out"
    plan = init_main(["--source_tokenizer_dir", str(smollm2_dir), "--target_tokenizer_dir", str(output),
                      "--expand_tokens_file", str(pieces), "--no_protect"])
    assert plan.already_present == ["Ġthe"] and len(plan.added) == 2  # the duplicate is dropped
    expanded = AutoTokenizer.from_pretrained(output)
    for word in (" žluťoučký", " přílišný"):
        ids = expanded.encode("Kůň je" + word, add_special_tokens=False)
        assert ids[-1] >= plan.first_new_id and expanded.decode(ids[-1:]) == word


def test_without_protection_english_changes(smollm2_dir, czech_byte_level_dir, english_reference):
    base = json.loads((smollm2_dir / "tokenizer.json").read_text())
    trained = json.loads((czech_byte_level_dir / "tokenizer.json").read_text())
    from colossal_lang.tokenizer.expand_byte_level import apply_byte_level_plan, build_tokenizer, fired_new_tokens
    from colossal_lang.tokenizer.expand_byte_level import pieces_from_tokenizer_json

    plan = plan_byte_level_expansion(base, pieces_from_tokenizer_json(trained))
    fired = fired_new_tokens(build_tokenizer(apply_byte_level_plan(base, plan)), plan, english_reference)
    assert len(fired) > 10  # protection has real work to do: Czech pieces such as " se" fire on English


def test_target_script_only_rejects_ascii_pieces(smollm2_dir, tmp_path):
    pieces = tmp_path / "pieces.jsonl"
    pieces.write_text("".join(json.dumps({"piece": w}, ensure_ascii=False) + "\n"
                              for w in (" kůň", " Basic", " dialog")), encoding="utf-8")
    plan = init_main(["--source_tokenizer_dir", str(smollm2_dir), "--target_tokenizer_dir", str(tmp_path / "out"),
                      "--expand_tokens_file", str(pieces), "--no_protect", "--target_script_only"])
    assert plan.added == ["ĠkÅ¯ÅĪ"]
    assert sum(reason.startswith("no target-script letter") for reason in plan.rejected.values()) == 2
