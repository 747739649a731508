"""Which expansion a base tokenizer gets, decided (or refused, with the reason) before any output is written.

- `spm`: a SentencePiece BPE `tokenizer.model` (LLaMA-2, Mistral), alone or beside a `tokenizer.json`
  (the usual Hugging Face folder): the model is expanded and the `tokenizer.json` rebuilt from it.
- `byte_level`: a byte-level BPE `tokenizer.json` (GPT-2, SmolLM2, Llama 3, Qwen 2.5/3, DeepSeek-V3,
  gpt-oss), whose added tokens may sit after the vocabulary.
- `metaspace`: a SentencePiece-style BPE `tokenizer.json` without its `.model` (Gemma 3, converted
  Llama 2): spaces written as `▁`, usually byte fallback for characters it lacks.

Anything else (WordPiece, Unigram, a BPE whose added tokens disagree with its vocabulary) is refused.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Union

from colossal_lang.errors import InputError
from colossal_lang.io.tokenizer_files import find_sentencepiece_model, load_base_tokenizer_json, read_sentencepiece_model

FAMILIES = ("spm", "byte_level", "metaspace")
SPM_SPACE = "\u2581"


def tokenizer_family(path: Union[str, Path]) -> str:
    """'spm', 'byte_level' or 'metaspace' for a tokenizer folder or file; InputError (with why) otherwise."""
    path = Path(path)
    if not path.exists():
        raise InputError("no such tokenizer file or folder", path)
    model_path = find_sentencepiece_model(path)
    if model_path is not None:
        proto = read_sentencepiece_model(model_path)
        if proto.trainer_spec.model_type != proto.trainer_spec.BPE:
            kind = proto.trainer_spec.ModelType.Name(proto.trainer_spec.model_type)
            raise InputError(f"unsupported tokenizer: a SentencePiece {kind} model; only SentencePiece BPE "
                             "(LLaMA-2, Mistral) can be expanded", model_path)
        return "spm"
    config = load_base_tokenizer_json(path)
    where = path / "tokenizer.json" if path.is_dir() else path
    model_type = config["model"].get("type")
    if model_type != "BPE":
        raise InputError(f"unsupported tokenizer: a {model_type} tokenizer.json; only BPE (byte-level or "
                         "SentencePiece-style) can be expanded", where)
    check_added_token_ids(config, where)
    if "ByteLevel" in json.dumps(config.get("pre_tokenizer")):
        return "byte_level"
    if writes_spaces_as_metaspace(config):
        return "metaspace"
    raise InputError("unsupported tokenizer: a BPE tokenizer.json that is neither byte-level (ByteLevel "
                     "pre-tokenizer) nor SentencePiece-style (spaces written as '\u2581')", where)


def writes_spaces_as_metaspace(config: dict) -> bool:
    """True when the normalizer or pre-tokenizer turns spaces into `▁` (Replace or Metaspace steps)."""
    pipeline = json.dumps([config.get("normalizer"), config.get("pre_tokenizer")], ensure_ascii=False)
    return '"Metaspace"' in pipeline or ('"Replace"' in pipeline and SPM_SPACE in pipeline)


def check_added_token_ids(config: dict, where: Path) -> None:
    """Refuse a tokenizer.json whose added tokens clash with its vocabulary (the ids could not all be kept)."""
    vocab = config["model"]["vocab"]
    token_by_id = {token_id: token for token, token_id in vocab.items()}
    for added in config.get("added_tokens", []):
        content, token_id = added["content"], added["id"]
        if content in vocab and vocab[content] != token_id:
            raise InputError(f"unsupported tokenizer: added token {content!r} has id {token_id} but the "
                             f"vocabulary gives it {vocab[content]}", where)
        if content not in vocab and token_id in token_by_id:
            raise InputError(f"unsupported tokenizer: added token {content!r} and vocabulary token "
                             f"{token_by_id[token_id]!r} share id {token_id}", where)
