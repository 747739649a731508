"""Per-category bins, buckets, token-weighted mixing and curriculum order on real text."""

from __future__ import annotations

import json

import pytest


def _category_ngrams(tokenizer, folder, n=6):
    grams = set()
    for path in sorted(folder.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            ids = tokenizer(json.loads(line)["target"], add_special_tokens=False)["input_ids"] + [2]
            grams.update(tuple(ids[i:i + n]) for i in range(max(1, len(ids) - n + 1)))
    return grams


def test_bins_hold_only_their_category_and_split_each_category(small_pretrain_dirs, smollm2_tokenizer_dir,
                                                               smollm2_tokenizer, prepare_pretrain, load_parts, tmp_path):
    manifest = prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "out",
                                "--max_length", 96, "--num_spliced_dataset_bins", 3)
    parts = load_parts(tmp_path / "out")
    assert len(parts) == manifest["num_buckets"] == 3
    grams = {"cs": _category_ngrams(smollm2_tokenizer, small_pretrain_dirs[0]),
             "en": _category_ngrams(smollm2_tokenizer, small_pretrain_dirs[1])}
    per_bucket, foreign = [], 0
    for part in parts:
        counts = {"cs": 0, "en": 0}
        for row in part:
            counts[row["category"]] += 1
            start = 0
            for length in row["doc_lengths"]:  # every document of the row comes from the row's category
                piece = tuple(row["input_ids"][start:start + min(length, 6)])
                start += length
                if len(piece) == 6:
                    assert piece in grams[row["category"]]
                    foreign += piece not in grams[row["category"]] or piece in grams["en" if row["category"] == "cs" else "cs"]
        per_bucket.append(counts)
    # A few 6-grams (code, product names) occur in both languages' help pages; almost all are exclusive.
    assert foreign < 0.05 * sum(len(part) for part in parts)
    for category in ("cs", "en"):
        sizes = [counts[category] for counts in per_bucket]
        assert sum(sizes) == manifest["categories"][category]["sequences"]
        assert max(sizes) - min(sizes) <= 1  # bin k of each category: near-equal thirds


@pytest.mark.parametrize("weights", [("cs", 0.75, "en", 0.25), ("cs", 0.3, "en", 0.7)])
def test_weights_give_the_asked_token_shares(weights, small_pretrain_dirs, smollm2_tokenizer_dir,
                                             prepare_pretrain, load_parts, tmp_path):
    first, first_weight, second, second_weight = weights
    manifest = prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "out", "--max_length", 128,
                                "--category_weights", f"{first}={first_weight},{second}={second_weight}")
    tokens = {"cs": 0, "en": 0}
    for part in load_parts(tmp_path / "out"):
        for row in part:
            tokens[row["category"]] += len(row["input_ids"])
    total = sum(tokens.values())
    assert abs(tokens[first] / total - first_weight) < 0.01
    assert abs(tokens[second] / total - second_weight) < 0.01
    assert manifest["category_weights"] == {first: first_weight, second: second_weight}
    # The heaviest category is used exactly once: all its tokens, no repeats.
    heaviest = first if first_weight > second_weight else second
    assert manifest["categories"][heaviest]["tokens"] == manifest["categories"][heaviest]["input_tokens"]


def test_curriculum_keeps_categories_in_the_given_order(small_pretrain_dirs, smollm2_tokenizer_dir,
                                                        prepare_pretrain, load_parts, tmp_path):
    manifest = prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "out", "--max_length", 128,
                                "--order", "curriculum", "--category_weights", "en=0.5,cs=0.5")
    categories = [row["category"] for row in load_parts(tmp_path / "out")[0]]
    first_cs = categories.index("cs")
    assert set(categories[:first_cs]) == {"en"} and set(categories[first_cs:]) == {"cs"}
    assert manifest["order"] == "curriculum"


def test_shuffled_buckets_interleave_categories(small_pretrain_dirs, smollm2_tokenizer_dir, prepare_pretrain,
                                                load_parts, tmp_path):
    prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "out", "--max_length", 128)
    categories = [row["category"] for row in load_parts(tmp_path / "out")[0]]
    changes = sum(a != b for a, b in zip(categories, categories[1:]))
    assert changes > 10
