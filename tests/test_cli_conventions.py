"""Evaluation and inference share their model/device/window/output flags, booleans parse one way, and the
older spellings (`--no_progress`, `--do_sample false`, `--mc_fewshot_file`, `--force`) still work."""

from __future__ import annotations

import argparse

import pytest

from colossal_lang.evaluation import compare, multiple_choice, perplexity
from colossal_lang import inference

PARSERS = {
    "perplexity": perplexity.build_parser,
    "multiple_choice": multiple_choice.build_parser,
    "compare": compare.build_parser,
    "inference": inference.build_parser,
}
# The flags each command must take from colossal_lang.cli_flags.
SHARED = {
    "perplexity": ["--model_path", "--tokenizer_path", "--device", "--dtype", "--batch_size", "--max_length",
                   "--stride", "--max_documents", "--max_characters", "--output_json", "--progress"],
    "multiple_choice": ["--model_path", "--tokenizer_path", "--device", "--dtype", "--batch_size", "--fewshot_file",
                        "--num_fewshot", "--output_json", "--progress"],
    "compare": ["--device", "--dtype", "--batch_size", "--max_length", "--stride", "--max_documents",
                "--max_characters", "--fewshot_file", "--num_fewshot", "--progress"],
    "inference": ["--model_path", "--tokenizer_path", "--device", "--dtype"],
}


def action(parser: argparse.ArgumentParser, flag: str) -> argparse.Action:
    return parser._option_string_actions[flag]


def described(a: argparse.Action):
    return (tuple(a.option_strings), a.dest, a.default, a.type, a.choices, a.help, a.required, a.nargs)


@pytest.mark.parametrize("flag", sorted({flag for flags in SHARED.values() for flag in flags}))
def test_a_shared_flag_is_the_same_in_every_command(flag):
    descriptions = {name: described(action(PARSERS[name](), flag)) for name, flags in SHARED.items() if flag in flags}
    assert len(descriptions) >= 2
    assert len(set(descriptions.values())) == 1, descriptions


def test_one_batch_size_and_dtype_list_everywhere():
    for name in ("perplexity", "multiple_choice", "compare"):
        assert action(PARSERS[name](), "--batch_size").default == 4
    for name in PARSERS:
        assert action(PARSERS[name](), "--dtype").choices == ("auto", "float32", "bfloat16", "float16")
    with pytest.raises(SystemExit) as caught:
        perplexity.build_parser().parse_args(["--model_path", "m", "--data", "d", "--dtype", "half"])
    assert caught.value.code == 2  # was accepted by the parser and only refused after reading the data


@pytest.mark.parametrize("spelling, expected", [
    ([], True), (["--no_progress"], False), (["--no-progress"], False), (["--progress", "false"], False),
    (["--progress"], True), (["--progress", "no"], False), (["--no_progress", "false"], True),
])
def test_progress_spellings(spelling, expected):
    for name in ("perplexity", "multiple_choice"):
        assert PARSERS[name]().parse_args(["--model_path", "m", "--data", "d", *spelling]).progress is expected
    assert compare.build_parser().parse_args(["--model", "m", "--output_dir", "o", *spelling]).progress is expected


@pytest.mark.parametrize("spelling", ["--fewshot_file", "--mc_fewshot_file"])
def test_fewshot_file_has_both_spellings(spelling):
    args = multiple_choice.build_parser().parse_args(["--model_path", "m", "--data", "d", spelling, "shots.jsonl"])
    assert args.fewshot_file == "shots.jsonl"
    args = compare.build_parser().parse_args(["--model", "m", "--output_dir", "o", spelling, "shots.jsonl"])
    assert args.fewshot_file == "shots.jsonl"


@pytest.mark.parametrize("spelling, expected", [
    ([], True), (["--do_sample", "false"], False), (["--do_sample", "False"], False), (["--no-do_sample"], False),
    (["--do_sample"], True), (["--do_sample", "true"], True),
])
def test_do_sample_spellings(spelling, expected):
    assert inference.build_parser().parse_args(["--model_path", "m", *spelling]).do_sample is expected


def test_chat_and_calibrate_are_booleans():
    parse = inference.build_parser().parse_args
    assert parse(["--model_path", "m"]).chat is None  # unset: --prompt_style decides
    assert parse(["--model_path", "m", "--chat"]).chat is True
    assert parse(["--model_path", "m", "--no-chat"]).chat is False
    parse = multiple_choice.build_parser().parse_args
    assert parse(["--model_path", "m", "--data", "d", "--calibrate", "false"]).calibrate is False
    assert parse(["--model_path", "m", "--data", "d", "--no-calibrate"]).calibrate is False


def test_a_bad_boolean_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as caught:
        multiple_choice.build_parser().parse_args(["--model_path", "m", "--data", "d", "--calibrate", "maybe"])
    assert caught.value.code == 2
    assert "expected a boolean (true/false), got 'maybe'" in capsys.readouterr().err


def test_import_overwrite_has_the_older_force_spelling():
    from colossal_lang.model.import_smollm2 import build_parser

    for spelling, expected in ([], False), (["--overwrite"], True), (["--force"], True), (["--no-overwrite"], False):
        assert build_parser().parse_args(spelling).overwrite is expected
