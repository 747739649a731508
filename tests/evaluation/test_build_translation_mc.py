"""The pick-the-translation set: rebuilt exactly from the SFT file, held out from training, well formed."""

from __future__ import annotations

import json

from colossal_lang.evaluation.build_translation_mc import main, read_translation_pairs
from colossal_lang.evaluation.multiple_choice import read_multiple_choice


def test_committed_set_is_reproduced_by_the_builder(data_dir, tmp_path):
    summary = main(["--sft_file", str(data_dir / "sft" / "cs_translate.jsonl"), "--output_dir", str(tmp_path)])
    for name in ("cs_translate_mc.jsonl", "cs_translate_mc_fewshot.jsonl"):
        assert (tmp_path / name).read_bytes() == (data_dir / "eval" / name).read_bytes()
    assert summary["questions"] + summary["fewshot"] + summary["dropped"] == 200


def test_questions_come_only_from_the_held_out_rows(data_dir):
    pairs = read_translation_pairs(data_dir / "sft" / "cs_translate.jsonl")
    training_texts = {text.casefold() for _, english, czech in pairs[:-200] for text in (english, czech)}
    czech_by_line = {line: czech for line, _, czech in pairs}
    first_heldout_line = pairs[-200][0]
    questions = read_multiple_choice(data_dir / "eval" / "cs_translate_mc.jsonl")
    fewshot = read_multiple_choice(data_dir / "eval" / "cs_translate_mc_fewshot.jsonl")
    assert len(questions) >= 150 and len(fewshot) == 10
    rows = [json.loads(line) for line in (data_dir / "eval" / "cs_translate_mc.jsonl").read_text().splitlines()]
    heldout_czech = {czech.casefold() for _, _, czech in pairs[-200:]}
    for row, item in zip(rows, questions):
        assert row["source_line"] >= first_heldout_line
        assert item.choices[item.answer] == czech_by_line[row["source_line"]]
        assert len(set(item.choices)) == 4
        english = item.question.removeprefix("English: ").removesuffix("\nCzech:")
        assert english.casefold() not in training_texts
        # Distractors too are Czech sides of held-out rows, never of training rows.
        assert all(choice.casefold() in heldout_czech for choice in item.choices)
        assert all(choice.casefold() not in training_texts for choice in item.choices)
    # The gold position is spread over the four slots (seeded), not stuck in one.
    assert len({item.answer for item in questions}) == 4


def test_too_few_held_out_rows_is_an_input_error(data_dir, tmp_path):
    import pytest

    from colossal_lang.errors import InputError

    sft_file = str(data_dir / "sft" / "cs_translate.jsonl")
    with pytest.raises(InputError, match=r"only \d of the last 3 rows"):  # was ValueError from random.sample
        main(["--sft_file", sft_file, "--heldout_rows", "3", "--num_fewshot", "0", "--output_dir", str(tmp_path)])
    with pytest.raises(InputError, match="--num_fewshot must be >= 0"):
        main(["--sft_file", sft_file, "--num_fewshot", "-1", "--output_dir", str(tmp_path)])
    summary = main(["--sft_file", sft_file, "--heldout_rows", "12", "--num_fewshot", "2", "--output_dir", str(tmp_path)])
    questions = read_multiple_choice(tmp_path / "cs_translate_mc.jsonl")
    assert summary["fewshot"] == 2 and len(questions) == summary["questions"] == 12 - summary["dropped"] - 2
    assert all(len(set(item.choices)) == 4 for item in questions)
