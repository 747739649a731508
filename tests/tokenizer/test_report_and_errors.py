"""Compression report, and bad inputs giving one-line errors that name the file and line."""

from __future__ import annotations

import csv
import json

import pytest

from colossal_lang.errors import InputError, run_cli
from colossal_lang.tokenizer.init_tokenizer import main as init_main
from colossal_lang.tokenizer.report import chars_per_token, main as report_main


def test_report_table_and_files(smollm2_dir, mistral_spm_path, data_dir, tmp_path, capsys):
    czech = data_dir / "heldout" / "cs_fortunes.jsonl"
    english = data_dir / "heldout" / "en_state_of_the_union.jsonl"
    rows = report_main(["--tokenizer", str(smollm2_dir), "--tokenizer", str(mistral_spm_path), "--data", str(czech),
                        "--data", str(english), "--output_markdown", str(tmp_path / "r.md"), "--output_csv", str(tmp_path / "r.csv")])
    assert len(rows) == 4
    by_key = {(r.tokenizer, r.data): r for r in rows}
    smol_cs = by_key[(str(smollm2_dir), czech.name)]
    mistral_cs = by_key[(str(mistral_spm_path), czech.name)]
    assert smol_cs.byte_fallback_share == 0 and mistral_cs.byte_fallback_share > 0.005  # č, ř, ů... fall to bytes
    assert by_key[(str(smollm2_dir), english.name)].chars_per_token > 2 * smol_cs.chars_per_token
    assert "chars/token" in capsys.readouterr().out and (tmp_path / "r.md").read_text().count("\n") == 6
    assert len(list(csv.DictReader(open(tmp_path / "r.csv")))) == 4
    direct = chars_per_token([str(smollm2_dir)], str(czech))
    assert direct[str(smollm2_dir)] == pytest.approx(smol_cs.chars_per_token)


def test_missing_tokenizer_folder_is_an_input_error(tmp_path, data_dir):
    with pytest.raises(InputError) as error:
        init_main(["--source_tokenizer_dir", str(tmp_path / "nope"), "--target_tokenizer_dir", str(tmp_path / "out"),
                   "--expand_tokens_file", str(tmp_path / "x.jsonl")])
    assert str(tmp_path / "nope") in str(error.value)


def test_folder_without_tokenizer_files_is_an_input_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="tokenizer.json not found"):
        init_main(["--source_tokenizer_dir", str(tmp_path / "empty"), "--target_tokenizer_dir", str(tmp_path / "out"),
                   "--expand_tokens_file", str(tmp_path / "x.jsonl")])


def test_malformed_expand_file_names_file_and_line(smollm2_dir, tmp_path, capsys):
    pieces = tmp_path / "pieces.jsonl"
    pieces.write_text(json.dumps({"piece": " kůň"}) + "\n" + '{"piece": 3}\n', encoding="utf-8")
    argv = ["--source_tokenizer_dir", str(smollm2_dir), "--target_tokenizer_dir", str(tmp_path / "out"),
            "--expand_tokens_file", str(pieces), "--no_protect"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(init_main, argv)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip()
    assert message == f"error: {pieces}:2: expected a non-empty string field 'piece'"
    pieces.write_text('{"piece": " kůň"}\n{"piece": \n', encoding="utf-8")
    with pytest.raises(InputError) as error:
        init_main(argv)
    assert error.value.line == 2 and error.value.path == str(pieces)


def test_train_without_text_is_an_input_error(tmp_path, smollm2_dir, data_dir):
    from colossal_lang.tokenizer.train_tokenizer import main as train_main

    with pytest.raises(InputError, match="no text found"):
        train_main(["--data_input_dirs", str(data_dir / "pretrain" / "cs"), "--categories", "klingon",
                    "--base_tokenizer_dir", str(smollm2_dir), "--output_dir", str(tmp_path / "t")])


def test_config_lists_are_replaced_by_the_command_line(smollm2_dir, mistral_spm_path, tmp_path):
    data = tmp_path / "cs.jsonl"
    data.write_text(json.dumps({"target": "Příliš žluťoučký kůň úpěl ďábelské ódy."}, ensure_ascii=False) + "\n",
                    encoding="utf-8")
    config = tmp_path / "report.yaml"
    # Single values for repeatable flags: each is a list of one (not a string iterated character by character).
    config.write_text(f"tokenizer: {smollm2_dir}\ndata: {data}\n", encoding="utf-8")
    rows = report_main(["--config", str(config)])
    assert [(row.tokenizer, row.data) for row in rows] == [(str(smollm2_dir), data.name)]
    # A repeated flag on the command line replaces the config's list instead of adding to it.
    rows = report_main(["--config", str(config), "--tokenizer", str(mistral_spm_path)])
    assert [row.tokenizer for row in rows] == [str(mistral_spm_path)]
