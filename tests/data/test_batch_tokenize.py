"""Tokenizing over worker processes: the same documents in the same order, and bad records still named by file:line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from colossal_lang.data.batch_tokenize import IGNORE_INDEX, batched, tokenize_in_order
from colossal_lang.data.tokenize_pretrain import document_specials, tokenize_pretrain_batch
from colossal_lang.errors import InputError

REPO = Path(__file__).resolve().parents[2]


def _czech_records(data_dir, limit):
    lines = (data_dir / "pretrain/cs/fortunes.jsonl").read_text(encoding="utf-8").splitlines()[:limit]
    return [json.loads(line) for line in lines]


def _documents(batches):
    documents = []
    for batch in batches:
        ends = np.cumsum(batch.lengths)
        documents += [(batch.token_ids[end - n:end].tolist(), batch.labels[end - n:end].tolist())
                      for end, n in zip(ends, batch.lengths)]
    return documents


def test_two_workers_return_every_batch_in_order(data_dir, smollm2_tokenizer):
    records = _czech_records(data_dir, 120)
    records[5] = dict(records[5], source="Citát dne: ")  # one batch takes the offsets path
    specials = document_specials(smollm2_tokenizer)
    kwargs = {"tokenizer": smollm2_tokenizer, "prefix_ids": specials.prefix_ids, "suffix_ids": specials.suffix_ids}
    here = list(tokenize_in_order(batched(records, 7), tokenize_pretrain_batch, kwargs, num_proc=1))
    workers = list(tokenize_in_order(batched(records, 7), tokenize_pretrain_batch, kwargs, num_proc=2))
    assert len(here) == len(workers) == 18  # 120 records in batches of 7
    assert _documents(workers) == _documents(here)
    expected = [smollm2_tokenizer(record["source"] + record["target"], add_special_tokens=False)["input_ids"] + [2]
                for record in records]
    assert [ids for ids, _ in _documents(workers)] == expected
    source_labels = _documents(workers)[5][1]
    assert source_labels[0] == IGNORE_INDEX and source_labels[-1] == 2


def test_bad_record_behind_many_batches_names_file_and_line_with_workers(data_dir, smollm2_tokenizer_dir, jsonl,
                                                                         prepare_pretrain, tmp_path):
    records = _czech_records(data_dir, 2500)
    lines = [json.dumps(record, ensure_ascii=False) for record in records]
    lines[2300] = '{"source": "", "target": 7, "category": "cs"}'
    jsonl(tmp_path / "in.jsonl", lines)
    with pytest.raises(InputError, match=r"in\.jsonl:2301: wrong type: field 'target' must be a string"):
        prepare_pretrain(tmp_path / "in.jsonl", smollm2_tokenizer_dir, tmp_path / "out", "--num_proc", 2)
    assert not (tmp_path / "out").exists()
    manifest = prepare_pretrain(tmp_path / "in.jsonl", smollm2_tokenizer_dir, tmp_path / "out", "--num_proc", 2,
                                "--on_error", "skip", "--max_length", 256)
    assert manifest["records_read"] == 2500 and manifest["records_kept"] == 2499
    assert manifest["skipped"] == {"wrong type": 1}


def test_sft_with_workers_equals_one_process_and_skips_the_same_record(data_dir, smollm2_tokenizer_dir, jsonl,
                                                                       prepare_sft, load_parts, tmp_path):
    lines = (data_dir / "sft/cs_translate.jsonl").read_text(encoding="utf-8").splitlines()[:600]
    long_answer = json.loads(lines[400])
    long_answer["messages"][-1]["content"] = "Velmi dlouhá odpověď. " * 200
    lines[400] = json.dumps(long_answer, ensure_ascii=False)
    jsonl(tmp_path / "in.jsonl", lines)
    flags = ["--max_length", 512, "--on_error", "skip"]
    one = prepare_sft(tmp_path / "in.jsonl", smollm2_tokenizer_dir, tmp_path / "one", *flags)
    two = prepare_sft(tmp_path / "in.jsonl", smollm2_tokenizer_dir, tmp_path / "two", *flags, "--num_proc", 2)
    assert one["records_kept"] == two["records_kept"] == 599
    assert one["skipped"] == two["skipped"] == {"first turn too long": 1}
    # Per category, like pretraining: the records kept (the skipped one is counted under "skipped" only).
    assert one["categories"]["translation"]["records"] == one["categories"]["translation"]["documents"] == 599
    assert [list(part) for part in load_parts(tmp_path / "one")] == [list(part) for part in load_parts(tmp_path / "two")]
    with pytest.raises(InputError, match=r"in\.jsonl:401: first turn too long"):
        prepare_sft(tmp_path / "in.jsonl", smollm2_tokenizer_dir, tmp_path / "three", "--max_length", 512, "--num_proc", 2)


def test_a_killed_worker_stops_the_run_instead_of_hanging(data_dir, smollm2_tokenizer_dir):
    """A worker killed outright (the kernel's OOM killer sends SIGKILL) must end the run with an error, not a hang."""
    script = textwrap.dedent("""
        import json, os, signal, sys
        from transformers import AutoTokenizer
        from colossal_lang.data.batch_tokenize import batched, tokenize_in_order
        from colossal_lang.data.tokenize_pretrain import document_specials, tokenize_pretrain_batch

        tokenizer = AutoTokenizer.from_pretrained(sys.argv[2])
        lines = open(sys.argv[1], encoding="utf-8").read().splitlines()[:200]
        records = [json.loads(line) for line in lines]
        doomed = records[150]["target"]

        def killed_at_record_150(batch, **kwargs):
            if any(record["target"] == doomed for record in batch):
                os.kill(os.getpid(), signal.SIGKILL)
            return tokenize_pretrain_batch(batch, **kwargs)

        specials = document_specials(tokenizer)
        kwargs = {"tokenizer": tokenizer, "prefix_ids": specials.prefix_ids, "suffix_ids": specials.suffix_ids}
        list(tokenize_in_order(batched(records, 10), killed_at_record_150, kwargs, num_proc=2))
    """)
    result = subprocess.run([sys.executable, "-c", script, str(data_dir / "pretrain/cs/fortunes.jsonl"),
                             str(smollm2_tokenizer_dir)], cwd=REPO, capture_output=True, text=True, timeout=90,
                            env=dict(os.environ, USE_TORCH="0"))
    assert result.returncode != 0
    assert "RuntimeError: a tokenizing worker process died" in result.stderr


def test_truncation_and_padding_saved_in_tokenizer_json_do_not_reach_the_documents(
        data_dir, smollm2_tokenizer_dir, smollm2_tokenizer, jsonl, prepare_sft, load_parts, tmp_path):
    """tokenizer.json saved with truncation/padding on: `tokenizer(text)` turns them off, the bare backend does not."""
    import shutil

    from transformers import AutoTokenizer

    folder = shutil.copytree(smollm2_tokenizer_dir, tmp_path / "tokenizer")
    spec = json.loads((folder / "tokenizer.json").read_text(encoding="utf-8"))
    spec["truncation"] = {"direction": "Right", "max_length": 32, "strategy": "LongestFirst", "stride": 0}
    spec["padding"] = {"strategy": {"Fixed": 48}, "direction": "Right", "pad_to_multiple_of": None, "pad_id": 2,
                       "pad_type_id": 0, "pad_token": "<|im_end|>"}
    (folder / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")

    records = _czech_records(data_dir, 40)
    specials = document_specials(smollm2_tokenizer)
    fresh = AutoTokenizer.from_pretrained(folder)  # never called as tokenizer(text) before the batch function
    batch = tokenize_pretrain_batch(records, fresh, specials.prefix_ids, specials.suffix_ids)
    expected = tokenize_pretrain_batch(records, smollm2_tokenizer, specials.prefix_ids, specials.suffix_ids)
    assert batch.lengths.tolist() == expected.lengths.tolist()
    assert batch.token_ids.tolist() == expected.token_ids.tolist()

    jsonl(tmp_path / "in.jsonl", (data_dir / "sft/cs_translate.jsonl").read_text(encoding="utf-8").splitlines()[:40])
    prepare_sft(tmp_path / "in.jsonl", folder, tmp_path / "saved", "--max_length", 256)
    prepare_sft(tmp_path / "in.jsonl", smollm2_tokenizer_dir, tmp_path / "plain", "--max_length", 256)
    saved, plain = load_parts(tmp_path / "saved"), load_parts(tmp_path / "plain")
    assert [list(part) for part in saved] == [list(part) for part in plain]
