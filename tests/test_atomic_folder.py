"""The shared atomic writer: a failed write keeps the old output; a run that died mid-swap is repaired."""

import os
import subprocess
import sys

import pytest

from colossal_lang.io.atomic_folder import staged_folder


def test_failed_write_keeps_the_previous_output(tmp_path):
    output = tmp_path / "out"
    with staged_folder(output) as staging:
        (staging / "weights.bin").write_text("old")
    with pytest.raises(OSError):
        with staged_folder(output) as staging:
            (staging / "weights.bin").write_text("half")
            raise OSError(28, "No space left on device")
    assert (output / "weights.bin").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_run_killed_between_the_two_renames_gets_its_output_back(tmp_path):
    output = tmp_path / "out"
    with staged_folder(output) as staging:
        (staging / "weights.bin").write_text("old")
    # A child process moves the output aside and is killed before moving the new one in.
    code = (
        "import os, signal, sys\n"
        "import colossal_lang.io.atomic_folder as atomic_folder\n"
        "real_replace = os.replace\n"
        "def replace_then_die(source, destination):\n"
        "    real_replace(source, destination)\n"
        "    if '.replaced-' in str(destination):\n"
        "        os.kill(os.getpid(), signal.SIGKILL)\n"
        "atomic_folder.os.replace = replace_then_die\n"
        "with atomic_folder.staged_folder(sys.argv[1]) as staging:\n"
        "    (staging / 'weights.bin').write_text('new')\n"
    )
    killed = subprocess.run([sys.executable, "-c", code, str(output)], capture_output=True)
    assert killed.returncode == -9
    assert not output.exists()
    with staged_folder(tmp_path / "out") as staging:  # the next run first repairs, then writes
        assert (output / "weights.bin").read_text() == "old"
        (staging / "weights.bin").write_text("newer")
    assert (output / "weights.bin").read_text() == "newer"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
