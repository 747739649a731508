"""Build small prepared datasets in the docs/formats.md layout straight from real jsonl text (tests, benchmarks).

Independent of prepare_pretrain_dataset.py on purpose: training tests pin the format, not that tool.
"""

from __future__ import annotations

import json
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]  # colossal_lang/testing/ -> the repository
PRETRAIN = REPO_ROOT / "data" / "pretrain"


def read_texts(relative: str, limit: int) -> list[str]:
    texts = []
    with open(PRETRAIN / relative, encoding="utf-8") as handle:
        for line in handle:
            texts.append(json.loads(line)["target"])
            if len(texts) == limit:
                break
    return texts


def pack(token_lists: list[list[int]], max_length: int) -> list[tuple[list[int], list[int]]]:
    """Greedy packing: documents longer than max_length are chunked; returns (input_ids, doc_lengths) rows."""
    rows, current, lengths = [], [], []
    for tokens in token_lists:
        for start in range(0, len(tokens), max_length):
            piece = tokens[start:start + max_length]
            if len(current) + len(piece) > max_length:
                rows.append((current, lengths))
                current, lengths = [], []
            current = current + piece
            lengths = lengths + [len(piece)]
    if current:
        rows.append((current, lengths))
    return rows


def write_prepared_dataset(out_dir, tokenizer, texts_by_category: dict, max_length: int = 64,
                           packing: str = "doc_causal", num_buckets: int = 1, mask_first_tokens: int = 0,
                           one_document_per_row: bool = False) -> Path:
    """Tokenize, pack per category, and save as arrow parts + manifest.json. Rows are split over the buckets."""
    from datasets import Dataset

    out_dir = Path(out_dir)
    columns = {"input_ids": [], "labels": [], "doc_lengths": [], "category": []}
    categories = {}
    for category, texts in texts_by_category.items():
        token_lists = [tokenizer(text)["input_ids"] + [tokenizer.eos_token_id] for text in texts]
        if one_document_per_row:
            rows = [(tokens[:max_length], [len(tokens[:max_length])]) for tokens in token_lists]
        else:
            rows = pack(token_lists, max_length)
        for input_ids, doc_lengths in rows:
            labels = list(input_ids)
            for i in range(min(mask_first_tokens, len(labels))):
                labels[i] = -100
            columns["input_ids"].append(input_ids)
            columns["labels"].append(labels)
            columns["doc_lengths"].append(doc_lengths)
            columns["category"].append(category)
        categories[category] = {"records": len(texts), "documents": len(texts), "sequences": len(rows),
                                "tokens": sum(len(r[0]) for r in rows), "loss_tokens": sum(len(r[0]) for r in rows)}
    total = len(columns["category"])
    bounds = [round(total * b / num_buckets) for b in range(num_buckets + 1)]
    for bucket in range(num_buckets):
        part = {k: v[bounds[bucket]:bounds[bucket + 1]] for k, v in columns.items()}
        Dataset.from_dict(part).save_to_disk(str(out_dir / "arrow" / f"part-{bucket:05d}"))
    manifest = {"format": "colossal-lang/packed-v1", "kind": "pretrain", "tokenizer_hash": "test",
                "max_length": max_length, "packing": packing, "num_buckets": num_buckets, "categories": categories,
                "category_weights": {c: 1.0 for c in categories}, "order": "as given", "seed": 0, "inputs": []}
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return out_dir
