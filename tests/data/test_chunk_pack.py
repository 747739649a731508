"""Chunking keeps every token; packing respects document boundaries and max_length (unit + end to end)."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np

from colossal_lang.data.batch_tokenize import IGNORE_INDEX
from colossal_lang.data.chunking import chunk_documents
from colossal_lang.data.packing import pack_spans


def test_chunking_windows_cover_every_token_once():
    doc_offsets = np.array([0, 5, 5 + 16, 5 + 16 + 17, 5 + 16 + 17 + 1])
    spans = chunk_documents(doc_offsets, max_length=8)
    assert spans.lengths.tolist() == [5, 8, 8, 8, 8, 1, 1]
    assert spans.document.tolist() == [0, 1, 1, 2, 2, 2, 3]
    covered = np.concatenate([np.arange(s, s + n) for s, n in zip(spans.starts, spans.lengths)])
    assert covered.tolist() == list(range(doc_offsets[-1]))


def test_packing_fits_rows_and_places_each_span_once():
    lengths = np.array([7, 3, 8, 2, 5, 1, 6, 4, 4])
    rows = pack_spans(lengths, max_length=8)
    assert sorted(span for row in rows for span in row) == list(range(len(lengths)))
    assert all(lengths[row].sum() <= 8 for row in rows)
    # 40 tokens need at least 5 rows of 8; best-fit decreasing reaches that bound here.
    assert len(rows) == 5


def _documents(tokenizer, folder):
    """Tokenized documents (as the pipeline makes them for SmolLM2: text + <|im_end|>) of a folder."""
    docs = []
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            docs.append(tuple(tokenizer(json.loads(line)["target"], add_special_tokens=False)["input_ids"]) + (2,))
    return docs


def test_pipeline_chunks_packs_and_loses_nothing(small_pretrain_dirs, smollm2_tokenizer_dir, smollm2_tokenizer,
                                                 prepare_pretrain, load_parts, tmp_path):
    max_length = 128
    manifest = prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "out", "--max_length", max_length)
    rows = [row for part in load_parts(tmp_path / "out") for row in part]
    docs = _documents(smollm2_tokenizer, small_pretrain_dirs[0]) + _documents(smollm2_tokenizer, small_pretrain_dirs[1])
    long_docs = [doc for doc in docs if len(doc) > max_length]
    assert long_docs and manifest["categories"]["en"]["chunked_documents"] > 0
    assert sum(m["chunked_documents"] for m in manifest["categories"].values()) == len(long_docs)

    pieces = Counter()
    for row in rows:
        assert len(row["input_ids"]) <= max_length
        assert len(row["labels"]) == len(row["input_ids"])
        assert sum(row["doc_lengths"]) == len(row["input_ids"])
        assert row["labels"] == row["input_ids"]  # empty sources: every token is learned
        start = 0
        for length in row["doc_lengths"]:
            pieces[tuple(row["input_ids"][start:start + length])] += 1
            start += length
    # Rebuild the expected pieces: short documents whole, long ones cut into max_length windows.
    expected = Counter()
    for doc in docs:
        for start in range(0, len(doc), max_length):
            expected[doc[start:start + max_length]] += 1
    assert pieces == expected
    total = sum(len(doc) for doc in docs)
    assert sum(m["tokens"] for m in manifest["categories"].values()) == total
    # Packing fills rows: fewer than 10% more rows than the token count strictly needs.
    assert len(rows) <= 1.1 * total / max_length + 2
    assert all(label != IGNORE_INDEX for row in rows[:5] for label in row["labels"])
