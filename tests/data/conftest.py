"""Tokenizer folders and small real-text inputs for the data-preparation tests.

- `smollm2_tokenizer_dir`: SmolLM2's tokenizer alone (byte-level BPE, no BOS, eos <|im_end|>, own chat template);
- `mistral_tokenizer_dir`: Mistral v1 SentencePiece as a LlamaTokenizerFast folder (adds <s>, eos </s>, no template);
- `llama3_tokens_tokenizer_dir`: SmolLM2 plus the llama3 turn tokens as special tokens (for the llama3 built-in);
- `small_pretrain_dirs`: the first rows of the embedded Czech and English corpora (long speeches included).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest


def write_jsonl(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        for record in records:
            handle.write((record if isinstance(record, str) else json.dumps(record, ensure_ascii=False)) + "\n")
    return path


def head_records(path: Path, limit: int) -> list:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line, _ in zip(handle, range(limit))]


@pytest.fixture(scope="session")
def smollm2_tokenizer_dir(smollm2_tokenizer, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("smollm2-tokenizer")
    smollm2_tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def mistral_tokenizer_dir(mistral_spm_path, tmp_path_factory) -> Path:
    import sentencepiece
    from transformers import LlamaTokenizerFast

    folder = tmp_path_factory.mktemp("mistral-tokenizer")
    # add_prefix_space=True: without it transformers 4.51 drops SentencePiece's dummy prefix ("▁A" becomes "A").
    tokenizer = LlamaTokenizerFast(vocab_file=str(mistral_spm_path), legacy=True, add_prefix_space=True)
    text = "Ahoj světe, jak se máš?\n  Dobře."
    assert tokenizer(text, add_special_tokens=False)["input_ids"] == sentencepiece.SentencePieceProcessor(
        model_file=str(mistral_spm_path)).encode(text)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def mistral_tokenizer(mistral_tokenizer_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(mistral_tokenizer_dir)


@pytest.fixture(scope="session")
def llama3_tokens_tokenizer_dir(smollm2_tokenizer_dir, tmp_path_factory) -> Path:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_tokenizer_dir)
    tokenizer.add_special_tokens({"additional_special_tokens": [
        "<|begin_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]})
    folder = tmp_path_factory.mktemp("smollm2-llama3-tokens")
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def small_pretrain_dirs(data_dir, tmp_path_factory) -> tuple:
    """Real Czech (fortunes, help pages) and English (help pages, two long speeches) in two folders."""
    root = tmp_path_factory.mktemp("small-pretrain")
    write_jsonl(root / "cs" / "fortunes.jsonl", head_records(data_dir / "pretrain/cs/fortunes.jsonl", 300))
    write_jsonl(root / "cs" / "libreoffice_help.jsonl", head_records(data_dir / "pretrain/cs/libreoffice_help.jsonl", 60))
    write_jsonl(root / "en" / "libreoffice_help.jsonl", head_records(data_dir / "pretrain/en/libreoffice_help.jsonl", 60))
    write_jsonl(root / "en" / "state_of_the_union.jsonl", head_records(data_dir / "pretrain/en/state_of_the_union.jsonl", 2))
    return root / "cs", root / "en"


def _argv(inputs, tokenizer_dir, output_dir, *extra) -> list:
    inputs = [inputs] if isinstance(inputs, (str, Path)) else inputs
    return ["--data_input_dirs", ",".join(str(p) for p in inputs), "--tokenizer_dir", str(tokenizer_dir),
            "--data_output_dirs", str(output_dir), *map(str, extra)]


@pytest.fixture
def jsonl():
    """`jsonl(path, records)`: write records (dicts, or raw strings written as they are) one per line."""
    return write_jsonl


@pytest.fixture
def prepare_pretrain():
    """`prepare_pretrain(inputs, tokenizer_dir, output_dir, *flags)` runs the CLI's main in-process."""
    from colossal_lang.data.prepare_pretrain import main

    return lambda *args: main(_argv(*args))


@pytest.fixture
def prepare_sft():
    from colossal_lang.data.prepare_sft import main

    return lambda *args: main(_argv(*args))


@pytest.fixture
def load_parts():
    """`load_parts(output_dir)`: the arrow parts of a prepared dataset, in bucket order."""
    from datasets import load_from_disk

    return lambda output_dir: [load_from_disk(str(part)) for part in sorted((Path(output_dir) / "arrow").iterdir())]
