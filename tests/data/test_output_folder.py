"""Output folders: manifest fields, identical reruns, refusing another dataset, and a run killed part way."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from colossal_lang.data.arrow_output import tokenizer_hash
from colossal_lang.errors import InputError

REPO = Path(__file__).resolve().parents[2]
MANIFEST_KEYS = {"format", "kind", "tokenizer_hash", "max_length", "packing", "num_buckets", "categories",
                 "category_weights", "order", "seed", "inputs"}
CATEGORY_KEYS = {"records", "documents", "chunked_documents", "sequences", "tokens", "loss_tokens"}


def _arrow_bytes(folder: Path) -> dict:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def test_manifest_has_the_documented_fields(small_pretrain_dirs, smollm2_tokenizer_dir, prepare_pretrain, load_parts, tmp_path):
    manifest = prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "out", "--max_length", 128,
                                "--packing", "causal", "--category_weights", "cs=0.75,en=0.25")
    assert MANIFEST_KEYS <= set(manifest)
    assert manifest["format"] == "colossal-lang/packed-v1" and manifest["kind"] == "pretrain"
    assert manifest["packing"] == "causal" and manifest["max_length"] == 128
    assert manifest["tokenizer_hash"] == tokenizer_hash(smollm2_tokenizer_dir)
    for entry in manifest["categories"].values():
        assert CATEGORY_KEYS <= set(entry)
    parts = load_parts(tmp_path / "out")
    assert [len(part) for part in parts] == manifest["part_rows"]
    assert sum(len(part) for part in parts) == sum(e["sequences"] for e in manifest["categories"].values())
    features = parts[0].features
    assert features["input_ids"].feature.dtype == "int32" and features["category"].dtype == "string"


def test_two_runs_and_num_proc_give_identical_shards(small_pretrain_dirs, smollm2_tokenizer_dir, prepare_pretrain, tmp_path):
    flags = ["--max_length", 128, "--category_weights", "cs=0.75,en=0.25", "--num_spliced_dataset_bins", 2]
    prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "a", *flags)
    prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "b", *flags, "--num_proc", 2)
    assert _arrow_bytes(tmp_path / "a") == _arrow_bytes(tmp_path / "b")
    prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "c", *flags, "--seed", 7)
    assert _arrow_bytes(tmp_path / "a" / "arrow") != _arrow_bytes(tmp_path / "c" / "arrow")


def test_existing_output_is_reused_refused_or_overwritten(small_pretrain_dirs, smollm2_tokenizer_dir, prepare_pretrain,
                                                          tmp_path, capsys):
    out = tmp_path / "out"
    prepare_pretrain(small_pretrain_dirs[0], smollm2_tokenizer_dir, out, "--max_length", 128)
    before = _arrow_bytes(out)
    capsys.readouterr()
    prepare_pretrain(small_pretrain_dirs[0], smollm2_tokenizer_dir, out, "--max_length", 128)
    assert "nothing to do" in capsys.readouterr().out and _arrow_bytes(out) == before
    with pytest.raises(InputError, match=r"out: output folder already holds a different dataset; pass --overwrite"):
        prepare_pretrain(small_pretrain_dirs[0], smollm2_tokenizer_dir, out, "--max_length", 64)
    manifest = prepare_pretrain(small_pretrain_dirs[0], smollm2_tokenizer_dir, out, "--max_length", 64, "--overwrite")
    assert manifest["max_length"] == 64 and json.loads((out / "manifest.json").read_text())["max_length"] == 64
    other = tmp_path / "other"
    (other / "notes").mkdir(parents=True)
    with pytest.raises(InputError, match="already holds other files"):
        prepare_pretrain(small_pretrain_dirs[0], smollm2_tokenizer_dir, other)


def test_config_file_sets_flags_and_command_line_wins(small_pretrain_dirs, smollm2_tokenizer_dir, prepare_pretrain, tmp_path):
    config = tmp_path / "data.yaml"
    config.write_text("max_length: 64\ncategory_weights: cs=0.5,en=0.5\nnum_spliced_dataset_bins: 2\n")
    manifest = prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "out", "--config", config,
                                "--num_spliced_dataset_bins", 1)
    assert manifest["max_length"] == 64 and manifest["category_weights"] == {"cs": 0.5, "en": 0.5}
    assert manifest["num_buckets"] == 1


# Runs the CLI, but SIGKILLs itself at the moment the finished folder would be moved into place:
# the latest point at which a crash can happen, with every part already written.
KILL_BEFORE_MOVE = """
import os, signal, sys
from pathlib import Path
import colossal_lang.io.atomic_folder as atomic_folder
real_replace = os.replace
def replace(source, target):
    if Path(target).name == "out":
        os.kill(os.getpid(), signal.SIGKILL)
    real_replace(source, target)
atomic_folder.os.replace = replace
from colossal_lang.data.prepare_pretrain import main
main(sys.argv[1:])
"""

# SIGKILLs itself once `KILL_AFTER` input parts are committed: a preparation stopped half way through its input.
KILL_AFTER_PARTS = """
import os, signal, sys
from pathlib import Path
import colossal_lang.io.atomic_folder as atomic_folder
real_replace, committed = os.replace, []
def replace(source, target):
    real_replace(source, target)
    if Path(target).name.startswith("part-") and Path(target).parent.name.endswith(".parts"):
        committed.append(target)
        if len(committed) == int(os.environ["KILL_AFTER"]):
            os.kill(os.getpid(), signal.SIGKILL)
atomic_folder.os.replace = replace
from colossal_lang.data.prepare_pretrain import main
main(sys.argv[1:])
"""


def _small_parts_argv(small_pretrain_dirs, smollm2_tokenizer_dir):
    # 0.01 MB parts: each of the 4 files of the small corpus (24-132 kB) is a part of its own.
    return ["--data_input_dirs", ",".join(map(str, small_pretrain_dirs)), "--tokenizer_dir", str(smollm2_tokenizer_dir),
            "--max_length", "128", "--num_spliced_dataset_bins", "2", "--part_size_mb", "0.01",
            "--category_weights", "cs=0.6,en=0.4"]


@pytest.mark.slow
def test_killed_run_leaves_nothing_complete_and_rerun_matches(small_pretrain_dirs, smollm2_tokenizer_dir, prepare_pretrain, tmp_path):
    argv = ["--data_input_dirs", ",".join(map(str, small_pretrain_dirs)), "--tokenizer_dir", str(smollm2_tokenizer_dir),
            "--max_length", "128", "--num_spliced_dataset_bins", "2"]
    killed = subprocess.run([sys.executable, "-c", KILL_BEFORE_MOVE, *argv, "--data_output_dirs", str(tmp_path / "out")],
                            cwd=REPO, capture_output=True, timeout=120)
    assert killed.returncode == -9
    assert not (tmp_path / "out").exists()
    leftovers = list(tmp_path.glob(".out.partial-*"))
    assert len(leftovers) == 1 and (leftovers[0] / "manifest.json").is_file()  # complete content, hidden name
    prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "out", *argv[4:])
    prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "uninterrupted", *argv[4:])
    assert not list(tmp_path.glob(".out.partial-*"))  # the rerun cleaned up
    assert not (tmp_path / ".out.parts").exists()  # and the parts it combined
    assert _arrow_bytes(tmp_path / "out") == _arrow_bytes(tmp_path / "uninterrupted")


@pytest.mark.slow
def test_run_killed_between_parts_resumes_without_redoing_them(small_pretrain_dirs, smollm2_tokenizer_dir, prepare_pretrain,
                                                               tmp_path, capsys):
    argv = _small_parts_argv(small_pretrain_dirs, smollm2_tokenizer_dir)
    killed = subprocess.run([sys.executable, "-c", KILL_AFTER_PARTS, *argv, "--data_output_dirs", str(tmp_path / "out")],
                            cwd=REPO, capture_output=True, timeout=120, env=dict(os.environ, KILL_AFTER="2"))
    assert killed.returncode == -9, killed.stderr[-2000:]
    assert not (tmp_path / "out").exists()  # nothing that looks like a dataset
    done = sorted((tmp_path / ".out.parts").glob("part-*"))
    assert [folder.name for folder in done] == ["part-00000", "part-00001"]
    written = {path: path.stat().st_mtime_ns for folder in done for path in folder.iterdir()}
    capsys.readouterr()
    manifest = prepare_pretrain(argv[1], argv[3], tmp_path / "out", *argv[4:], "--keep_parts")
    assert "4 input part(s): 2 already prepared, 2 prepared now" in capsys.readouterr().out
    assert manifest["num_parts"] == 4
    assert {path: path.stat().st_mtime_ns for path in written} == written  # the first two parts were not redone
    prepare_pretrain(argv[1], argv[3], tmp_path / "uninterrupted", *argv[4:])
    assert _arrow_bytes(tmp_path / "out") == _arrow_bytes(tmp_path / "uninterrupted")
