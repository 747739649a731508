"""Corpus-scale preparation: shards over input parts, windowed packing, and the format the loader reads back."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from colossal_lang.data.chunking import chunk_spans
from colossal_lang.data.format import Manifest, read_manifest
from colossal_lang.data.packing import CARRY_SHARE, WindowPacker, pack_spans

REPO = Path(__file__).resolve().parents[2]
# Parts of 0.01 MB: every file of the small corpus (4 files, 24-132 kB) is a part of its own.
SMALL_PARTS = ["--part_size_mb", 0.01, "--max_length", 128, "--num_spliced_dataset_bins", 2,
               "--category_weights", "cs=0.7,en=0.3"]


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _row_pieces(load_parts, folder) -> dict:
    """Per category, the sorted multiset of document pieces in the rows (what training sees, ignoring order)."""
    pieces = {}
    for part in load_parts(folder):
        for row in part:
            start = 0
            for length in row["doc_lengths"]:
                pieces.setdefault(row["category"], []).append(tuple(row["input_ids"][start:start + length]))
                start += length
    return {category: sorted(found) for category, found in pieces.items()}


def test_four_shards_then_combine_equal_one_run(small_pretrain_dirs, smollm2_tokenizer_dir, prepare_pretrain,
                                                load_parts, tmp_path):
    single = prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "one", *SMALL_PARTS)
    assert single["num_parts"] == 4
    shard_parts = []
    for shard in range(4):
        report = prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "four", *SMALL_PARTS,
                                  "--num_shards", 4, "--shard_index", shard)
        shard_parts.append(report["parts"])
        assert not (tmp_path / "four").exists()  # a shard writes parts only, never the dataset
    assert sorted(name for names in shard_parts for name in names) == [f"part-{i:05d}" for i in range(4)]
    assert all(len(names) == 1 for names in shard_parts)  # 4 parts, 4 shards: disjoint, one each
    combined = prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "four", *SMALL_PARTS)
    for category in ("cs", "en"):
        for key in ("input_tokens", "tokens", "loss_tokens", "sequences", "records"):
            assert combined["categories"][category][key] == single["categories"][category][key]
    # Parts do not depend on the number of shards: the very same bytes.
    assert _files(tmp_path / "four") == _files(tmp_path / "one")
    assert _row_pieces(load_parts, tmp_path / "four") == _row_pieces(load_parts, tmp_path / "one")


def test_shard_index_out_of_range_is_refused(small_pretrain_dirs, smollm2_tokenizer_dir, prepare_pretrain, tmp_path):
    from colossal_lang.errors import InputError

    with pytest.raises(InputError, match=r"--shard_index must be in 0\.\.1 \(--num_shards 2\), got 2"):
        prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "out", "--num_shards", 2, "--shard_index", 2)


@pytest.mark.slow
def test_shards_as_parallel_processes_like_xargs(small_pretrain_dirs, smollm2_tokenizer_dir, prepare_pretrain, tmp_path):
    """Two CLI processes at once on one work folder (what `xargs -P 2` runs), then the combining run."""
    argv = [sys.executable, str(REPO / "prepare_pretrain_dataset.py"), "--data_input_dirs",
            ",".join(map(str, small_pretrain_dirs)), "--tokenizer_dir", str(smollm2_tokenizer_dir),
            "--data_output_dirs", str(tmp_path / "out"), *map(str, SMALL_PARTS), "--num_shards", "2"]
    shards = [subprocess.Popen([*argv, "--shard_index", str(k)], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True) for k in range(2)]
    outputs = [shard.communicate(timeout=180) for shard in shards]
    assert [shard.returncode for shard in shards] == [0, 0], [err[-1500:] for _, err in outputs]
    assert all("part(s) in" in out for out, _ in outputs)
    combined = subprocess.run(argv[:-2], cwd=REPO, capture_output=True, text=True, timeout=180)
    assert combined.returncode == 0, combined.stderr[-1500:]
    assert "4 input part(s): 4 already prepared, 0 prepared now" in combined.stdout
    prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "single", *SMALL_PARTS)
    assert _files(tmp_path / "out") == _files(tmp_path / "single")


def test_sft_shards_share_the_machinery(data_dir, smollm2_tokenizer_dir, jsonl, prepare_sft, load_parts, tmp_path):
    lines = (data_dir / "sft" / "cs_translate.jsonl").read_text(encoding="utf-8").splitlines()[:300]
    for index in range(3):
        jsonl(tmp_path / "sft" / f"chunk-{index}.jsonl", [json.loads(line) for line in lines[index::3]])
    flags = ["--max_length", 512, "--part_size_mb", 0.001, "--packing", "doc_causal"]
    single = prepare_sft(tmp_path / "sft", smollm2_tokenizer_dir, tmp_path / "one", *flags)
    for shard in range(3):
        prepare_sft(tmp_path / "sft", smollm2_tokenizer_dir, tmp_path / "three", *flags, "--num_shards", 3, "--shard_index", shard)
    combined = prepare_sft(tmp_path / "sft", smollm2_tokenizer_dir, tmp_path / "three", *flags)
    assert single["num_parts"] == 3 and single["records_kept"] == 300 and single["packed"]
    assert combined["categories"] == single["categories"]
    assert _row_pieces(load_parts, tmp_path / "three") == _row_pieces(load_parts, tmp_path / "one")


def test_window_packer_places_every_span_once_in_bounded_memory(small_pretrain_dirs, smollm2_tokenizer):
    lengths = []
    for path in sorted(small_pretrain_dirs[1].glob("*.jsonl")) + sorted(small_pretrain_dirs[0].glob("*.jsonl")):
        texts = [json.loads(line)["target"] for line in path.read_text(encoding="utf-8").splitlines()]
        lengths += [len(ids) + 1 for ids in smollm2_tokenizer(texts, add_special_tokens=False)["input_ids"]]
    lengths = np.asarray(lengths, dtype=np.int64)
    max_length, window = 128, 2048
    spans = chunk_spans(np.cumsum(lengths) - lengths, lengths, max_length)
    token_ids = np.arange(int(lengths.sum()), dtype=np.int32)  # every token its own id: rows show where it went
    rows_out, peak = [], [0]

    def emit(ids, learned, starts, span_lengths, rows):
        for row in rows:
            rows_out.append(np.concatenate([ids[starts[s]:starts[s] + span_lengths[s]] for s in row]))

    packer = WindowPacker(max_length, window, emit)
    for start in range(0, len(spans.lengths), 50):
        packer.add(token_ids, np.ones(len(token_ids), bool), spans.starts[start:start + 50], spans.lengths[start:start + 50])
        peak[0] = max(peak[0], packer._buffered)
    packer.finish()
    assert sorted(np.concatenate(rows_out).tolist()) == token_ids.tolist()  # each token in exactly one row
    assert max(len(row) for row in rows_out) <= max_length
    # Between windows at most the carried spans stay (a quarter of the window), never the stream.
    assert peak[0] <= CARRY_SHARE * window + 50 * max_length
    # Fill within one percentage point of packing the whole stream at once, with a window of 16 rows.
    global_rows = len(pack_spans(spans.lengths, max_length))
    total = int(spans.lengths.sum())
    assert total / (len(rows_out) * max_length) > total / (global_rows * max_length) - 0.01


def test_summary_fill_ratio_matches_the_rows(small_pretrain_dirs, smollm2_tokenizer_dir, prepare_pretrain, load_parts,
                                            tmp_path, capsys):
    manifest = prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "out", "--max_length", 128,
                                "--buffer_tokens", 2048)
    rows = [row for part in load_parts(tmp_path / "out") for row in part]
    expected = sum(len(row["input_ids"]) for row in rows) / (len(rows) * 128)
    assert manifest["fill_ratio"] == pytest.approx(expected, abs=1e-4) and manifest["fill_ratio"] > 0.97
    assert f"fill ratio {expected:.2%}" in capsys.readouterr().out


def test_manifest_dataclass_reads_what_it_writes_and_keeps_unknown_keys(small_pretrain_dirs, smollm2_tokenizer_dir,
                                                                         prepare_pretrain, tmp_path):
    from colossal_lang.data.loader import load_prepared_dataset

    written = prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "out", *SMALL_PARTS)
    manifest = read_manifest(tmp_path / "out")
    assert manifest.to_dict() == written and manifest.num_parts == 4 and manifest.kind == "pretrain"
    newer = Manifest.from_dict({**written, "added_by_a_newer_version": [1, 2]})
    assert newer.to_dict()["added_by_a_newer_version"] == [1, 2]
    prepared = load_prepared_dataset([str(tmp_path / "out")])
    assert prepared.bucket_sizes == written["part_rows"] and prepared.max_length == 128
    assert len(prepared.dataset) == sum(entry["sequences"] for entry in written["categories"].values())
