"""Writers killed or failing part way: no output folder that looks complete, and a rerun gives the same files.

init_model, init_tokenizer and train_tokenizer build their output in a hidden sibling folder
(`.<name>.partial-<pid>`) and rename it into place last (colossal_lang.io.atomic_folder.staged_folder).
Here each is killed with SIGKILL right after its first output file is written (in a real subprocess, the
kill triggered from inside the save so that it always lands mid-write), or has a save fail with ENOSPC.
"""

from __future__ import annotations

import errno
import io
import os
import pathlib
import shutil
import signal
import subprocess
import sys
import textwrap
from contextlib import redirect_stdout
from pathlib import Path

import pytest

from colossal_lang.model.init_model import main as init_model_main
from colossal_lang.tokenizer.init_tokenizer import main as init_tokenizer_main
from colossal_lang.tokenizer.train_tokenizer import main as train_tokenizer_main
from tests.reliability.helpers import folder_files

REPO = Path(__file__).resolve().parents[2]

# Run a command's main in a subprocess that SIGKILLs itself right after the save writes file `KILL_AFTER`.
KILLED_RUN = textwrap.dedent("""
    import os, pathlib, signal, sys
    import safetensors.torch
    import transformers.modeling_utils as modeling_utils
    kill_after = os.environ["KILL_AFTER"]

    def die_after(name):
        if os.path.basename(str(name)) == kill_after:
            sys.stdout.flush()
            os.kill(os.getpid(), signal.SIGKILL)

    real_save_file = safetensors.torch.save_file
    def save_file(tensors, filename, *args, **kwargs):
        real_save_file(tensors, filename, *args, **kwargs)
        die_after(filename)
    modeling_utils.safe_save_file = save_file

    real_write_text = pathlib.Path.write_text
    def write_text(self, *args, **kwargs):
        written = real_write_text(self, *args, **kwargs)
        die_after(self)
        return written
    pathlib.Path.write_text = write_text

    module, argv = sys.argv[1], sys.argv[2:]
    main = __import__(module, fromlist=["main"]).main
    main(argv)
    print("NOT KILLED")
""")


def run_killed(module: str, argv: list, kill_after: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), KILL_AFTER=kill_after, TRANSFORMERS_VERBOSITY="error",
               TOKENIZERS_PARALLELISM="false")
    return subprocess.run([sys.executable, "-c", KILLED_RUN, module, *map(str, argv)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=180)


def leftovers(output: Path) -> list:
    """Hidden staging or replaced folders beside `output`."""
    return sorted(path.name for path in output.parent.glob(f".{output.name}.*"))


def quiet(main, argv):
    with redirect_stdout(io.StringIO()):
        return main([str(arg) for arg in argv])


def model_argv(source, tokenizer, output):
    return ["--source_model_and_tokenizer_path", source, "--target_tokenizer_path", tokenizer,
            "--target_model_path", output]


def tokenizer_argv(source, pieces, output):
    return ["--source_tokenizer_dir", source, "--target_tokenizer_dir", output,
            "--expand_tokens_file", pieces, "--no_protect"]


@pytest.fixture(scope="module")
def reference_model(tiny_smollm2_model_dir, expanded_tokenizer_dir, tmp_path_factory):
    """Files of an uninterrupted init_model run."""
    output = tmp_path_factory.mktemp("reference") / "model"
    quiet(init_model_main, model_argv(tiny_smollm2_model_dir, expanded_tokenizer_dir, output))
    return folder_files(output)


@pytest.fixture(scope="module")
def reference_tokenizer(smollm2_dir, pieces_file, tmp_path_factory):
    """Files of an uninterrupted init_tokenizer run."""
    output = tmp_path_factory.mktemp("reference") / "tokenizer"
    quiet(init_tokenizer_main, tokenizer_argv(smollm2_dir, pieces_file, output))
    return folder_files(output)


def test_init_model_killed_mid_save_leaves_nothing_that_looks_complete(tiny_smollm2_model_dir, expanded_tokenizer_dir,
                                                                       reference_model, tmp_path):
    output = tmp_path / "model"
    argv = model_argv(tiny_smollm2_model_dir, expanded_tokenizer_dir, output)
    killed = run_killed("colossal_lang.model.init_model", argv, kill_after="model.safetensors")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert not output.exists()
    partial = [tmp_path / name for name in leftovers(output)]
    assert [p.name.split("-")[0] for p in partial] == [".model.partial"]  # the kill landed mid-write:
    assert (partial[0] / "model.safetensors").is_file() and not (partial[0] / "tokenizer.json").exists()

    quiet(init_model_main, argv)
    assert leftovers(output) == []  # the rerun cleared the dead run's staging folder
    assert folder_files(output) == reference_model


def test_init_tokenizer_killed_mid_save_keeps_the_previous_output(smollm2_dir, pieces_file, reference_tokenizer,
                                                                  tmp_path):
    output = tmp_path / "tokenizer"
    shutil.copytree(smollm2_dir, output, ignore=shutil.ignore_patterns("model.safetensors", "config.json"))
    previous = folder_files(output)  # an older tokenizer in the output folder: it must survive whole
    argv = tokenizer_argv(smollm2_dir, pieces_file, output)
    killed = run_killed("colossal_lang.tokenizer.init_tokenizer", argv, kill_after="tokenizer.json")
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    assert folder_files(output) == previous
    assert [name.split("-")[0] for name in leftovers(output)] == [".tokenizer.partial"]

    quiet(init_tokenizer_main, argv)
    assert leftovers(output) == []
    assert folder_files(output) == reference_tokenizer


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def fail_on_write_of(monkeypatch, name: str) -> None:
    """Make Path.write_text raise ENOSPC when it writes file `name` (after the files before it are written)."""
    real_write_text = pathlib.Path.write_text

    def write_text(self, *args, **kwargs):
        if self.name == name:
            _disk_full()
        return real_write_text(self, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "write_text", write_text)


@pytest.mark.parametrize("previous_output", [False, True], ids=["fresh", "over-previous"])
def test_init_model_save_failing_for_disk_space(previous_output, tiny_smollm2_model_dir, expanded_tokenizer_dir,
                                                reference_model, smollm2_dir, tmp_path, monkeypatch):
    from transformers import PreTrainedTokenizerBase

    output = tmp_path / "model"
    if previous_output:
        shutil.copytree(smollm2_dir, output)
    previous = folder_files(output) if previous_output else None
    argv = model_argv(tiny_smollm2_model_dir, expanded_tokenizer_dir, output)
    with monkeypatch.context() as patch:  # the weights are written, then the tokenizer finds the disk full
        patch.setattr(PreTrainedTokenizerBase, "save_pretrained", _disk_full)
        with pytest.raises(OSError, match="No space left on device"):
            quiet(init_model_main, argv)
    assert (folder_files(output) == previous) if previous_output else not output.exists()
    assert leftovers(output) == []

    quiet(init_model_main, argv)
    assert folder_files(output) == reference_model


@pytest.mark.parametrize("previous_output", [False, True], ids=["fresh", "over-previous"])
def test_init_tokenizer_save_failing_for_disk_space(previous_output, smollm2_dir, pieces_file, reference_tokenizer,
                                                    tmp_path, monkeypatch):
    output = tmp_path / "tokenizer"
    if previous_output:
        shutil.copytree(smollm2_dir, output, ignore=shutil.ignore_patterns("model.safetensors"))
    previous = folder_files(output) if previous_output else None
    argv = tokenizer_argv(smollm2_dir, pieces_file, output)
    with monkeypatch.context() as patch:  # tokenizer.json is written, then merges.txt finds the disk full
        fail_on_write_of(patch, "merges.txt")
        with pytest.raises(OSError, match="No space left on device"):
            quiet(init_tokenizer_main, argv)
    assert (folder_files(output) == previous) if previous_output else not output.exists()
    assert leftovers(output) == []

    quiet(init_tokenizer_main, argv)
    assert folder_files(output) == reference_tokenizer


def test_train_tokenizer_save_failing_for_disk_space(data_dir, tmp_path, monkeypatch):
    from transformers import PreTrainedTokenizerBase

    argv = ["--data_input_dirs", data_dir / "pretrain" / "cs" / "fortunes.jsonl", "--model_type", "bpe",
            "--vocab_size", 400, "--max_sentences", 3000]
    reference = tmp_path / "reference"
    quiet(train_tokenizer_main, argv + ["--output_dir", reference])
    output = tmp_path / "trained"
    with monkeypatch.context() as patch:  # tokenizer.model is written, then the HF files find the disk full
        patch.setattr(PreTrainedTokenizerBase, "save_pretrained", _disk_full)
        with pytest.raises(OSError, match="No space left on device"):
            quiet(train_tokenizer_main, argv + ["--output_dir", output])
    assert not output.exists() and leftovers(output) == []
    quiet(train_tokenizer_main, argv + ["--output_dir", output])
    assert folder_files(output) == folder_files(reference)
