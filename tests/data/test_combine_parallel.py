"""The combine writes bucket files in parallel: the same bytes whatever --num_proc, and a failed writer leaves no dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from colossal_lang.data import combine
from colossal_lang.errors import InputError, run_cli
from colossal_lang.testing.faults import ENVIRONMENT

# Parts of 0.01 MB (each of the 4 small files is a part), rows of 128 tokens, pieces of 64 rows.
FLAGS = ["--part_size_mb", 0.01, "--max_length", 128]
SHUFFLED = [*FLAGS, "--num_spliced_dataset_bins", 2, "--category_weights", "cs=0.7,en=0.3"]
CURRICULUM = [*FLAGS, "--order", "curriculum"]  # one bucket: only cutting it into files gives the workers work


def _files(folder: Path) -> dict:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def _tables(load_parts, folder) -> list:
    return [part[:] for part in load_parts(folder)]


@pytest.fixture
def small_files(monkeypatch):
    """`small_files()`: from then on, data files of 128 rows written in pieces of 64, so that the small corpus's
    buckets span several files."""
    def cut():
        monkeypatch.setattr(combine, "WRITE_TOKENS", 64 * 128)
        monkeypatch.setattr(combine, "FILE_TOKENS", 128 * 128)
    return cut


@pytest.mark.parametrize("flags", [SHUFFLED, CURRICULUM], ids=["shuffle-2-buckets", "curriculum-1-bucket"])
def test_num_proc_does_not_change_the_dataset(small_pretrain_dirs, smollm2_tokenizer_dir, prepare_pretrain, load_parts,
                                             tmp_path, small_files, flags):
    from colossal_lang.data.loader import load_prepared_dataset

    whole = prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "whole", *flags)
    assert all(len(list(p.glob("*.arrow"))) == 1 for p in (tmp_path / "whole" / "arrow").iterdir())
    small_files()
    outputs = {}
    for num_proc in (1, 2):
        outputs[num_proc] = prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / f"n{num_proc}",
                                             *flags, "--num_proc", num_proc)
    assert _files(tmp_path / "n1") == _files(tmp_path / "n2")  # every byte, manifest included
    assert outputs[1] == outputs[2]
    bucket_files = [sorted(p.name for p in folder.glob("*.arrow")) for folder in sorted((tmp_path / "n2" / "arrow").iterdir())]
    rows = sum(outputs[2]["part_rows"])
    assert sum(len(names) for names in bucket_files) == sum(-(-n // 128) for n in outputs[2]["part_rows"]) > 2
    assert bucket_files[0][:2] == [f"data-00000-of-{len(bucket_files[0]):05d}.arrow", f"data-00001-of-{len(bucket_files[0]):05d}.arrow"]
    # The same rows in the same order as the bucket written as one file, and the same manifest.
    assert _tables(load_parts, tmp_path / "n2") == _tables(load_parts, tmp_path / "whole")
    assert outputs[2] == whole
    prepared = load_prepared_dataset([str(tmp_path / "n2")])
    assert prepared.bucket_sizes == outputs[2]["part_rows"] and len(prepared.dataset) == rows


@pytest.mark.parametrize("fault, message", [("combine_disk_full@2", "No space left on device"),
                                            ("combine_kill@1", "worker process died")])
def test_a_failed_bucket_writer_leaves_no_dataset_and_the_rerun_succeeds(
        small_pretrain_dirs, smollm2_tokenizer_dir, prepare_pretrain, tmp_path, monkeypatch, small_files, fault, message):
    output = tmp_path / "out"
    small_files()
    monkeypatch.setenv(ENVIRONMENT, fault)
    with pytest.raises(InputError, match=f"{output}: writing the buckets failed, nothing was written: .*{message}"):
        prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, output, *SHUFFLED, "--num_proc", 2)
    assert not output.exists()
    assert [p.name for p in tmp_path.iterdir()] == [".out.parts"]  # no staging folder left, the parts kept
    monkeypatch.delenv(ENVIRONMENT)
    manifest = prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, output, *SHUFFLED, "--num_proc", 2)
    assert manifest["num_parts"] == 4 and (output / "manifest.json").is_file()
    prepare_pretrain(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path / "clean", *SHUFFLED)
    assert _files(output) == _files(tmp_path / "clean")


def test_the_cli_reports_a_failed_writer_on_one_line(small_pretrain_dirs, smollm2_tokenizer_dir, tmp_path, monkeypatch,
                                                     small_files, capsys):
    from colossal_lang.data.prepare_pretrain import main

    small_files()
    monkeypatch.setenv(ENVIRONMENT, "combine_disk_full@3")
    argv = ["--data_input_dirs", ",".join(map(str, small_pretrain_dirs)), "--tokenizer_dir", str(smollm2_tokenizer_dir),
            "--data_output_dirs", str(tmp_path / "out"), *map(str, SHUFFLED), "--num_proc", "2"]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    assert exit_info.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {tmp_path / 'out'}: writing the buckets failed, nothing was written: "
                      "[Errno 28] No space left on device (simulated)"]
