"""Expanded tokenizers and small models for the model-initialisation tests, built with library calls only.

- a byte-level BPE expansion of SmolLM2: a Czech BPE trained with `tokenizers`, its new tokens and merges
  appended to SmolLM2's own (what the tokenizer stage does, done here without depending on it);
- a SentencePiece expansion of Mistral v1: frequent Czech words added as pieces to the ModelProto;
- a tiny untied Llama with Mistral's 32000-token vocabulary, and an untied copy of the sliced SmolLM2.
"""

from __future__ import annotations

import collections
import json
import re
from pathlib import Path

import pytest
import torch


def read_targets(path: Path, limit: int) -> list:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line)["target"] for line, _ in zip(handle, range(limit))]


def expand_byte_level_tokenizer(base_dir: Path, texts: list, czech_vocab_size: int, output_dir: Path) -> Path:
    """Append the tokens and merges of a BPE trained on `texts` to the byte-level tokenizer in `base_dir`."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import AutoTokenizer

    czech = Tokenizer(models.BPE())
    czech.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(
        vocab_size=czech_vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    czech.train_from_iterator(texts, trainer)

    base = AutoTokenizer.from_pretrained(base_dir)
    spec = json.loads(base.backend_tokenizer.to_str())
    vocab, merges = spec["model"]["vocab"], spec["model"]["merges"]
    known_merges = {tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges}
    next_id = len(base)
    for merge in json.loads(czech.to_str())["model"]["merges"]:
        left, right = merge if isinstance(merge, list) else merge.split(" ")
        if (left, right) in known_merges or left not in vocab or right not in vocab:
            continue
        if left + right not in vocab:
            vocab[left + right] = next_id
            next_id += 1
        merges.append([left, right] if isinstance(merges[0], list) else f"{left} {right}")
    base.save_pretrained(output_dir)
    for stale in ("vocab.json", "merges.txt"):  # tokenizer.json is the one source of truth from here on
        (output_dir / stale).unlink(missing_ok=True)
    (output_dir / "tokenizer.json").write_text(json.dumps(spec, ensure_ascii=False), encoding="utf-8")
    return output_dir


def frequent_czech_words(texts: list, count: int, exclude: set) -> list:
    counts = collections.Counter(word for text in texts for word in re.findall(r"\w{4,}", text.lower()))
    return [word for word, _ in counts.most_common() if "\u2581" + word not in exclude][:count]


def expand_sentencepiece(spm_path: Path, words: list, output_dir: Path) -> Path:
    """Add `▁word` pieces to a SentencePiece model and save it as a LlamaTokenizerFast folder."""
    from sentencepiece import sentencepiece_model_pb2
    from transformers import LlamaTokenizerFast

    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(spm_path.read_bytes())
    lowest = min(piece.score for piece in proto.pieces)
    for rank, word in enumerate(words):
        piece = proto.pieces.add()
        piece.piece, piece.score, piece.type = "\u2581" + word, lowest - 1 - rank, 1
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / "tokenizer.model").write_bytes(proto.SerializeToString())
    # add_prefix_space=True: without it transformers 4.51 builds a fast Llama tokenizer with no dummy prefix.
    LlamaTokenizerFast(vocab_file=str(output_dir / "tokenizer.model"), add_prefix_space=True).save_pretrained(output_dir)
    return output_dir


@pytest.fixture(scope="session")
def czech_texts(data_dir) -> list:
    return read_targets(data_dir / "pretrain" / "cs" / "fortunes.jsonl", 2500) + read_targets(
        data_dir / "pretrain" / "cs" / "libreoffice_help.jsonl", 700
    )


@pytest.fixture(scope="session")
def english_heldout(data_dir) -> list:
    return [text[:600] for text in read_targets(data_dir / "heldout" / "en_libreoffice_help.jsonl", 6)]


@pytest.fixture(scope="session")
def czech_heldout(data_dir) -> list:
    return [text[:600] for text in read_targets(data_dir / "heldout" / "cs_fortunes.jsonl", 6)]


@pytest.fixture(scope="session")
def smollm2_czech_tokenizer_dir(smollm2_dir, czech_texts, tmp_path_factory) -> Path:
    """SmolLM2's tokenizer grown by the new tokens of a 3000-token Czech byte-level BPE."""
    return expand_byte_level_tokenizer(smollm2_dir, czech_texts, 3000, tmp_path_factory.mktemp("smollm2-cs-tok"))


@pytest.fixture(scope="session")
def untied_sliced_smollm2_dir(sliced_smollm2_dir, tmp_path_factory) -> Path:
    """The sliced SmolLM2 with its own head: the embedding rows plus a small perturbation, so the two differ."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(sliced_smollm2_dir)
    generator = torch.Generator().manual_seed(1)
    embedding = model.model.embed_tokens.weight.data
    model.config.tie_word_embeddings = False
    model.lm_head.weight = torch.nn.Parameter(embedding + 0.01 * torch.randn(embedding.shape, generator=generator))
    output_dir = tmp_path_factory.mktemp("smollm2-untied")
    model.save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(sliced_smollm2_dir).save_pretrained(output_dir)
    return output_dir


@pytest.fixture(scope="session")
def mistral_tokenizer_dir(mistral_spm_path, tmp_path_factory) -> Path:
    return expand_sentencepiece(mistral_spm_path, [], tmp_path_factory.mktemp("mistral-tok"))


@pytest.fixture(scope="session")
def mistral_czech_tokenizer_dir(mistral_spm_path, czech_texts, tmp_path_factory) -> Path:
    """Mistral v1 plus 300 frequent Czech words as `▁word` pieces (ids 32000..32299)."""
    from transformers import LlamaTokenizerFast

    base = LlamaTokenizerFast(vocab_file=str(mistral_spm_path), add_prefix_space=True)
    words = frequent_czech_words(czech_texts, 300, set(base.get_vocab()))
    return expand_sentencepiece(mistral_spm_path, words, tmp_path_factory.mktemp("mistral-cs-tok"))


def save_tiny_llama(tokenizer_dir: Path, output_dir: Path, vocab_rows: int, tied: bool, seed: int = 0) -> Path:
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_rows, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, tie_word_embeddings=tied, max_position_embeddings=256,
    )
    model = LlamaForCausalLM(config)
    if not tied:  # make the head clearly different from the embeddings
        model.lm_head.weight.data.normal_(0.0, 0.2)
    model.save_pretrained(output_dir)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(output_dir)
    return output_dir


@pytest.fixture(scope="session")
def tiny_untied_llama_dir(mistral_tokenizer_dir, tmp_path_factory) -> Path:
    """A random untied Llama over Mistral's 32000 tokens."""
    return save_tiny_llama(mistral_tokenizer_dir, tmp_path_factory.mktemp("tiny-llama"), 32000, tied=False)


@pytest.fixture(scope="session")
def tiny_padded_llama_dir(mistral_tokenizer_dir, tmp_path_factory) -> Path:
    """The same, but its checkpoint already padded to 32064 rows past the 32000-token tokenizer."""
    return save_tiny_llama(mistral_tokenizer_dir, tmp_path_factory.mktemp("tiny-llama-padded"), 32064, tied=False)
