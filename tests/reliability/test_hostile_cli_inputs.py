"""Hostile inputs to the tokenizer and model commands: each gets exit 2 and one line naming the file (and line).

Table-driven: every case builds its bad input in a fresh folder and names the message it must produce,
`error: <file>[:<line>]: <problem>`. The data commands have their own table in tests/data/test_hostile_inputs.py.
Most cases run the command in-process through `run_cli`, exactly as its `__main__` does; the last test runs
each real entry point in a subprocess to show that no traceback reaches the user.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from colossal_lang.model.init_model import main as init_model_main
from colossal_lang.tokenizer.init_tokenizer import main as init_tokenizer_main
from colossal_lang.tokenizer.report import main as report_main
from colossal_lang.tokenizer.train_tokenizer import main as train_tokenizer_main
from tests.reliability.helpers import copy_without, run_expecting_input_error, save_tiny_llama

REPO = Path(__file__).resolve().parents[2]
GOOD = json.dumps({"source": "", "target": "Dobrý den, jak se máte?", "category": "cs"}, ensure_ascii=False).encode()
COMMANDS = {
    "train_tokenizer": train_tokenizer_main,
    "init_tokenizer": init_tokenizer_main,
    "report": report_main,
    "init_model": init_model_main,
}


@dataclass
class Inputs:
    """A fresh folder for one case, and the real tokenizers and models it may start from."""

    tmp: Path
    smollm2: Path  # the SmolLM2 folder (tokenizer.json, no tokenizer_config.json)
    model: Path  # a tiny Llama with SmolLM2's tokenizer
    expanded: Path  # SmolLM2's tokenizer expanded with a few Czech pieces
    mistral: Path  # Mistral v1's tokenizer as a Hugging Face folder
    pieces: Path

    def write(self, name: str, *lines: bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"\n".join(lines) + b"\n")
        return path

    def corpus(self, *bad_lines: bytes, name: str = "corpus/a.jsonl") -> Path:
        """A jsonl file whose line 1 is good and lines 2.. are `bad_lines`."""
        return self.write(name, GOOD, *bad_lines)

    def train(self, data: Path, *extra) -> list:
        """train_tokenizer flags; `extra` flags come last, so they override (argparse keeps the last value)."""
        return ["--data_input_dirs", data, "--model_type", "bpe", "--vocab_size", 300,
                "--output_dir", self.tmp / "out", *extra]

    def expand(self, source: Path, *extra) -> list:
        return ["--source_tokenizer_dir", source, "--target_tokenizer_dir", self.tmp / "out", *extra]

    def grow(self, source: Path, target: Path, output: Path = None) -> list:
        return ["--source_model_and_tokenizer_path", source, "--target_tokenizer_path", target,
                "--target_model_path", output or self.tmp / "out"]


CASES = {}


def case(build):
    """Register a case: `build(inputs)` returns (command, argv, regex the error line must match)."""
    CASES[build.__name__] = build
    return build


def at(path: Path, line: int = None) -> str:
    """The regex for `error: <path>[:<line>]: `."""
    return "error: " + re.escape(str(path)) + ("" if line is None else f":{line}") + ": "


# --- train_tokenizer --------------------------------------------------------------------------------------

@case
def train_folder_without_jsonl(c):
    c.write("texts/notes.md", b"# nothing to train on")
    return "train_tokenizer", c.train(c.tmp / "texts"), at(c.tmp / "texts") + r"folder holds no \.jsonl file$"


@case
def train_invalid_json(c):
    path = c.corpus(b'{"source": "", "target": "Ahoj", ')
    return "train_tokenizer", c.train(path.parent), at(path, 2) + "invalid JSON: Expecting property name"


@case
def train_missing_target(c):
    path = c.corpus(GOOD, b'{"source": "", "category": "cs"}')
    return "train_tokenizer", c.train(path.parent), at(path, 3) + "field 'target' missing or not a string$"


@case
def train_non_string_target(c):
    path = c.corpus(b'{"source": "", "target": ["Ahoj"], "category": "cs"}')
    return "train_tokenizer", c.train(path), at(path, 2) + "field 'target' missing or not a string$"


@case
def train_not_an_object(c):
    path = c.corpus(b'"Ahoj"')
    return "train_tokenizer", c.train(path), at(path, 2) + "expected a JSON object, got str$"


@case
def train_invalid_utf8_jsonl(c):
    line = b'{"source": "", "target": "Ahoj \xc5", "category": "cs"}'
    path = c.corpus(line)
    return "train_tokenizer", c.train(path), at(path, 2) + f"invalid UTF-8 at byte {line.index(0xC5)}$"


@case
def train_invalid_utf8_txt(c):  # was a UnicodeDecodeError traceback
    path = c.write("corpus.txt", "Dobrý den".encode(), "Na shledanou".encode(), b"Ahoj \xff\xfe")
    return "train_tokenizer", c.train(path), at(path, 3) + r"invalid UTF-8 at byte 5$"


@case
def train_only_empty_file(c):
    path = c.tmp / "corpus" / "a.jsonl"
    path.parent.mkdir()
    path.write_bytes(b"")
    return "train_tokenizer", c.train(path.parent), at(path.parent) + r"no text found"


@case
def train_base_tokenizer_json_not_an_object(c):  # was AttributeError: 'list' object has no attribute 'get'
    base = c.write("base/tokenizer.json", b"[1, 2, 3]").parent
    args = ["--data_input_dirs", c.corpus(), "--base_tokenizer_dir", base, "--output_dir", c.tmp / "out"]
    return "train_tokenizer", args, at(base / "tokenizer.json") + "not a tokenizers file"


@case
def train_output_is_a_file(c):
    output = c.write("out", b"not a folder")
    return "train_tokenizer", c.train(c.corpus(), "--output_dir", output), at(output) + "output path is a file"


@case
def train_output_holds_other_files(c):
    c.write("out/thesis.tex", b"\\documentclass{article}")
    return "train_tokenizer", c.train(c.corpus()), at(c.tmp / "out") + "output folder already holds other files"


@case
def train_config_does_not_parse(c):  # was a six-line YAML message
    config = c.write("train.yaml", b"vocab_size: 300", b"model_type: [bpe")
    return "train_tokenizer", c.train(c.corpus(), "--config", config), at(config, 3) + "cannot parse config: expected"


@case
def train_vocab_size_too_small(c):  # was a RuntimeError from SentencePiece's C++ trainer
    return "train_tokenizer", c.train(c.corpus(), "--vocab_size", 20), \
        "error: SentencePiece cannot train a 20-piece model on this corpus: Vocabulary size is smaller than"


@case
def train_vocab_size_zero(c):
    return "train_tokenizer", c.train(c.corpus(), "--vocab_size", 0), \
        "error: --vocab_size must be positive, got 0$"


# --- init_tokenizer ---------------------------------------------------------------------------------------

@case
def init_tokenizer_json_deleted(c):
    source = copy_without(c.smollm2, c.tmp / "base", "tokenizer.json", "model.safetensors")
    return "init_tokenizer", c.expand(source, "--expand_tokens_file", c.pieces, "--no_protect"), \
        at(source / "tokenizer.json") + "tokenizer.json not found$"


@case
def init_empty_tokenizer_folder(c):
    (c.tmp / "base").mkdir()
    return "init_tokenizer", c.expand(c.tmp / "base", "--expand_tokens_file", c.pieces, "--no_protect"), \
        at(c.tmp / "base" / "tokenizer.json") + "tokenizer.json not found$"


@case
def init_tokenizer_json_truncated(c):
    text = (c.smollm2 / "tokenizer.json").read_bytes()
    source = c.write("base/tokenizer.json", text[: len(text) // 2]).parent
    return "init_tokenizer", c.expand(source, "--expand_tokens_file", c.pieces, "--no_protect"), \
        "error: " + re.escape(str(source / "tokenizer.json")) + r":\d+: invalid JSON"


@case
def init_sentencepiece_model_corrupt(c):  # was protobuf DecodeError
    source = c.write("base/tokenizer.model", b"\x0a\x05hello\xff\xff").parent
    return "init_tokenizer", c.expand(source, "--expand_tokens_file", c.pieces, "--no_protect"), \
        at(source / "tokenizer.model") + r"not a SentencePiece model"


@case
def init_pieces_invalid_json(c):
    pieces = c.write("pieces.jsonl", b'{"piece": " k\xc5\xaf\xc5\x88"}', b'{"piece": " ahoj"', b'{"piece": " den"}')
    return "init_tokenizer", c.expand(c.smollm2, "--expand_tokens_file", pieces, "--no_protect"), \
        at(pieces, 2) + "invalid JSON: Expecting ',' delimiter"


@case
def init_pieces_wrong_field(c):
    pieces = c.write("pieces.jsonl", b'{"piece": " ahoj"}', b'{"piece": " den"}', b'{"token": " noc"}')
    return "init_tokenizer", c.expand(c.smollm2, "--expand_tokens_file", pieces, "--no_protect"), \
        at(pieces, 3) + "expected a non-empty string field 'piece'$"


@case
def init_expand_from_missing(c):
    return "init_tokenizer", c.expand(c.smollm2, "--expand_from_tokenizer", c.tmp / "trained", "--no_protect"), \
        at(c.tmp / "trained") + "no such tokenizer file or folder$"


@case
def init_swap_dictionary_missing(c):  # was FileNotFoundError, after the whole alignment had been computed
    args = c.expand(c.smollm2, "--expand_from_tokenizer", c.expanded, "--swap",
                    "--bilingual_dictionary", c.tmp / "cs-en.tsv")
    return "init_tokenizer", args, at(c.tmp / "cs-en.tsv") + "bilingual dictionary not found$"


@case
def init_swap_dictionary_bad_line(c):
    dictionary = c.write("cs-en.tsv", "# cs\ten".encode(), "kůň\thorse".encode(), "pes dog".encode())
    args = c.expand(c.smollm2, "--expand_from_tokenizer", c.expanded, "--swap", "--bilingual_dictionary", dictionary)
    return "init_tokenizer", args, at(dictionary, 3) + "expected 'target<TAB>source'$"


@case
def init_eval_text_missing(c):  # was reported only after the output folder had been written
    return "init_tokenizer", c.expand(c.smollm2, "--expand_tokens_file", c.pieces, "--no_protect",
                                      "--eval_text", c.tmp / "cs.jsonl"), at(c.tmp / "cs.jsonl") + "no such file or folder$"


@case
def init_output_is_the_source(c):  # would have overwritten the base tokenizer in place
    source = copy_without(c.smollm2, c.tmp / "base", "model.safetensors")
    args = ["--source_tokenizer_dir", source, "--target_tokenizer_dir", source,
            "--expand_tokens_file", c.pieces, "--no_protect"]
    return "init_tokenizer", args, at(source) + "the output folder must differ"


# --- report -----------------------------------------------------------------------------------------------

@case
def report_data_missing(c):
    return "report", ["--tokenizer", c.smollm2, "--data", c.tmp / "heldout.jsonl"], \
        at(c.tmp / "heldout.jsonl") + "no such file or folder$"


@case
def report_data_invalid_json(c):
    path = c.corpus(b'{"target": "Ahoj" "category": "cs"}')
    return "report", ["--tokenizer", c.smollm2, "--data", path], at(path, 2) + "invalid JSON"


@case
def report_tokenizer_folder_empty(c):
    (c.tmp / "tok").mkdir()
    return "report", ["--tokenizer", c.tmp / "tok", "--data", c.corpus()], \
        at(c.tmp / "tok") + "cannot load the tokenizer: the folder holds none of tokenizer.json"


@case
def report_sentencepiece_model_corrupt(c):  # was RuntimeError from sentencepiece
    model = c.write("tok.model", b"not a model")
    return "report", ["--tokenizer", model, "--data", c.corpus()], at(model) + "not a SentencePiece model"


@case
def report_output_is_a_folder(c):  # was IsADirectoryError after every tokenizer had been measured
    (c.tmp / "reports").mkdir()
    return "report", ["--tokenizer", c.smollm2, "--data", c.corpus(), "--output_markdown", c.tmp / "reports"], \
        at(c.tmp / "reports") + "is a folder; give a file name$"


# --- init_model -------------------------------------------------------------------------------------------

@case
def model_folder_missing(c):
    return "init_model", c.grow(c.tmp / "SmolLM2", c.expanded), at(c.tmp / "SmolLM2") + "source model folder not found$"


@case
def model_fewer_rows_than_its_tokenizer(c):
    from transformers import AutoTokenizer

    rows = len(AutoTokenizer.from_pretrained(c.model)) - 10
    small = save_tiny_llama(c.model, c.tmp / "small", rows)
    return "init_model", c.grow(small, c.expanded), \
        at(small) + f"model has {rows} embedding rows but its tokenizer has {rows + 10} tokens$"


@case
def model_target_not_an_expansion(c):
    return "init_model", c.grow(c.model, c.mistral), \
        at(c.mistral) + r"target tokenizer lacks \d+ of the source's 49152 tokens .*it is not an expansion"


@case
def model_weights_missing(c):  # was OSError traceback from transformers
    source = copy_without(c.model, c.tmp / "model", "model.safetensors")
    return "init_model", c.grow(source, c.expanded), at(source) + "cannot load the source model: OSError: .*no file named"


@case
def model_weights_truncated(c):  # was SafetensorError traceback
    source = copy_without(c.model, c.tmp / "model")
    weights = source / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    return "init_model", c.grow(source, c.expanded), at(source) + "cannot load the source model: SafetensorError"


@case
def model_config_unknown_architecture(c):  # was ValueError traceback
    source = copy_without(c.model, c.tmp / "model")
    (source / "config.json").write_text(json.dumps({"model_type": "llama-but-not"}))
    return "init_model", c.grow(source, c.expanded), at(source) + "cannot load the source model: ValueError: .*llama-but-not"


@case
def model_source_tokenizer_missing(c):
    source = copy_without(c.model, c.tmp / "model", "tokenizer.json", "tokenizer_config.json", "vocab.json",
                          "merges.txt", "special_tokens_map.json")
    return "init_model", c.grow(source, c.expanded), \
        at(source) + "cannot load the source tokenizer: the folder holds none of tokenizer.json"


@case
def model_source_tokenizer_incomplete(c):
    source = copy_without(c.model, c.tmp / "model", "tokenizer.json", "tokenizer_config.json")
    return "init_model", c.grow(source, c.expanded), at(source) + (
        r"cannot load the source tokenizer \(the folder holds merges\.txt, special_tokens_map\.json, vocab\.json\): \S")


@case
def model_target_tokenizer_json_corrupt(c):  # was a bare Exception from the tokenizers library
    target = copy_without(c.expanded, c.tmp / "target")
    (target / "tokenizer.json").write_text('{"version": "1.0",\n "model": {"type": "BPE",\n')
    return "init_model", c.grow(c.model, target), at(target / "tokenizer.json", 3) + "invalid JSON"


@case
def model_output_is_a_file(c):  # was NotADirectoryError after the whole expansion had run
    output = c.write("model.bin", b"x")
    return "init_model", c.grow(c.model, c.expanded, output), at(output) + "output path is a file"


@pytest.fixture
def inputs(tmp_path, smollm2_dir, tiny_smollm2_model_dir, expanded_tokenizer_dir, mistral_tokenizer_dir, pieces_file):
    return Inputs(tmp_path, smollm2_dir, tiny_smollm2_model_dir, expanded_tokenizer_dir, mistral_tokenizer_dir,
                  pieces_file)


def test_every_command_has_cases():
    commands = {name.split("_")[0] for name in CASES}
    assert commands == {"train", "init", "report", "model"} and len(CASES) >= 30


@pytest.mark.parametrize("case", sorted(CASES))
def test_hostile_input_gives_one_line_naming_the_file(case, inputs, capsys):
    command, argv, expected = CASES[case](inputs)
    before = sorted(p.name for p in inputs.tmp.iterdir())
    message = run_expecting_input_error(COMMANDS[command], argv, capsys)
    assert re.match(expected, message), f"{message!r} does not match {expected!r}"
    # Nothing was written: no output folder, no staging folder left beside it.
    assert sorted(p.name for p in inputs.tmp.iterdir()) == before


def test_refused_output_folder_keeps_its_files(inputs, capsys):
    thesis = inputs.write("out/thesis.tex", b"\\documentclass{article}")
    run_expecting_input_error(train_tokenizer_main, inputs.train(inputs.corpus()), capsys)
    run_expecting_input_error(init_model_main, inputs.grow(inputs.model, inputs.expanded), capsys)
    assert thesis.read_bytes() == b"\\documentclass{article}\n" and sorted(os.listdir(thesis.parent)) == ["thesis.tex"]


def test_real_entry_points_print_no_traceback(inputs):
    """One bad input per command, through `python -m ...` as a user runs it: exit 2, one line, no traceback."""
    runs = {
        "colossal_lang.tokenizer.train_tokenizer": train_invalid_utf8_txt(inputs),
        "colossal_lang.tokenizer.init_tokenizer": init_sentencepiece_model_corrupt(inputs),
        "colossal_lang.tokenizer.report": report_sentencepiece_model_corrupt(inputs),
        "colossal_lang.model.init_model": model_weights_truncated(inputs),
    }
    env = dict(os.environ, PYTHONPATH=str(REPO), TRANSFORMERS_VERBOSITY="error", TOKENIZERS_PARALLELISM="false")
    processes = {module: subprocess.Popen([sys.executable, "-m", module, *map(str, argv)], cwd=REPO, env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for module, (_, argv, _) in runs.items()}
    for module, process in processes.items():
        _, stderr = process.communicate(timeout=120)
        expected = runs[module][2]
        assert process.returncode == 2, (module, stderr)
        assert "Traceback" not in stderr, (module, stderr)
        assert len(stderr.strip().splitlines()) == 1, (module, stderr)
        assert re.match(expected, stderr.strip()), (module, stderr)
