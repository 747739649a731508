"""Session fixtures: small Czech tokenizers trained once, and SmolLM2 / Mistral expanded with them once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from colossal_lang.tokenizer.corpus import load_texts

SMALL_VOCAB = 3000


@pytest.fixture(scope="session")
def english_reference(data_dir):
    return load_texts(data_dir / "pretrain" / "en")



@pytest.fixture(scope="session")
def czech_byte_level_dir(smollm2_dir, data_dir, tmp_path_factory):
    from colossal_lang.tokenizer.train_tokenizer import main

    output = tmp_path_factory.mktemp("cs-byte-level")
    main(["--data_input_dirs", str(data_dir / "pretrain" / "cs"), "--model_type", "byte_level_bpe",
          "--base_tokenizer_dir", str(smollm2_dir), "--vocab_size", str(SMALL_VOCAB), "--output_dir", str(output)])
    return output


@pytest.fixture(scope="session")
def czech_sentencepiece_dir(data_dir, tmp_path_factory):
    from colossal_lang.tokenizer.train_tokenizer import main

    output = tmp_path_factory.mktemp("cs-spm")
    main(["--data_input_dirs", str(data_dir / "pretrain" / "cs"), "--model_type", "bpe",
          "--vocab_size", str(SMALL_VOCAB), "--output_dir", str(output)])
    return output


def _expand(source, trained, output, reference, extra=()):
    from colossal_lang.tokenizer.init_tokenizer import main

    plan = main(["--source_tokenizer_dir", str(source), "--target_tokenizer_dir", str(output),
                 "--expand_from_tokenizer", str(trained), "--reference_text", str(reference), *extra])
    return output, plan


@pytest.fixture(scope="session")
def smollm2_protected(smollm2_dir, czech_byte_level_dir, data_dir, tmp_path_factory):
    """(folder, plan) of SmolLM2 expanded with the Czech byte-level BPE, English protected."""
    return _expand(smollm2_dir, czech_byte_level_dir, tmp_path_factory.mktemp("smollm2-cs"), data_dir / "pretrain" / "en")


@pytest.fixture(scope="session")
def mistral_protected(mistral_spm_path, czech_sentencepiece_dir, data_dir, tmp_path_factory):
    """(folder, plan) of Mistral v1 expanded with the Czech SentencePiece BPE, English protected."""
    return _expand(mistral_spm_path.parent, czech_sentencepiece_dir, tmp_path_factory.mktemp("mistral-cs"),
                   data_dir / "pretrain" / "en")


def read_json(path: Path):
    return json.loads(Path(path).read_text(encoding="utf-8"))
