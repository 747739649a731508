"""Small real inputs for the reliability suite: SmolLM2's tokenizer on a tiny Llama, an expansion of it, Mistral's.

The model is tiny (one layer, hidden size 32) so that each hostile case loads it in a fraction of a second;
its tokenizer, the expanded tokenizer and Mistral's SentencePiece tokenizer are the real ones.
"""

from __future__ import annotations

import io
import json
import logging
import sys
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from tests.reliability.helpers import save_tiny_llama


class _CurrentStderr:
    """Whatever sys.stderr is when something is written: pytest swaps it per test (capsys)."""

    def write(self, text):
        return sys.stderr.write(text)

    def flush(self):
        sys.stderr.flush()


def _log_transformers_to_the_current_stderr() -> None:
    """transformers' log handler keeps the sys.stderr of its first use: under pytest, maybe an earlier test's
    capture, closed since, so a later warning prints a "Logging error" traceback that the one-line checks
    would take for the command's own. Done at collection, before any test has run."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.get_logger()  # creates the handler
    for handler in logging.getLogger("transformers").handlers:
        if isinstance(handler, logging.StreamHandler):
            handler.stream = _CurrentStderr()


_log_transformers_to_the_current_stderr()


# Czech pieces for an expansion, in the Colossal-LLaMA expand-tokens file format.
CZECH_PIECES = [" kůň", " příliš", " žluťoučký", " úpěl", " ďábelské", " ódy"]


@pytest.fixture(scope="session")
def tiny_smollm2_model_dir(smollm2_dir, smollm2_tokenizer, tmp_path_factory) -> Path:
    """A tiny Llama with one embedding row per SmolLM2 token, SmolLM2's tokenizer beside it."""
    return save_tiny_llama(smollm2_dir, tmp_path_factory.mktemp("tiny-smollm2") / "model", len(smollm2_tokenizer))


@pytest.fixture(scope="session")
def pieces_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("pieces") / "pieces.jsonl"
    path.write_text("".join(json.dumps({"piece": piece}, ensure_ascii=False) + "\n" for piece in CZECH_PIECES),
                    encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def expanded_tokenizer_dir(smollm2_dir, pieces_file, tmp_path_factory) -> Path:
    """SmolLM2's tokenizer expanded with CZECH_PIECES by the real init_tokenizer command."""
    from colossal_lang.tokenizer.init_tokenizer import main

    output = tmp_path_factory.mktemp("expanded") / "tokenizer"
    with redirect_stdout(io.StringIO()):
        main(["--source_tokenizer_dir", str(smollm2_dir), "--target_tokenizer_dir", str(output),
              "--expand_tokens_file", str(pieces_file), "--no_protect"])
    return output


@pytest.fixture(scope="session")
def mistral_tokenizer_dir(mistral_spm_path, tmp_path_factory) -> Path:
    """Mistral v1's SentencePiece tokenizer as a Hugging Face folder: a vocabulary SmolLM2's is not part of."""
    from transformers import LlamaTokenizerFast

    output = tmp_path_factory.mktemp("mistral") / "tokenizer"
    LlamaTokenizerFast(vocab_file=str(mistral_spm_path), add_prefix_space=True).save_pretrained(output)
    return output
