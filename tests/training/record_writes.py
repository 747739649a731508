"""train.py with an audit hook noting what this process changes under one folder (tests only).

    torchrun ... tests/training/record_writes.py REPORT_DIR WATCHED_DIR <train.py arguments>

At exit each process writes REPORT_DIR/rank-<RANK>.json: its RANK, LOCAL_RANK and GROUP_RANK (the node) from the
launcher, and the sorted paths, relative to WATCHED_DIR, that it opened for writing, created, renamed or removed.
Python's audit events do not see writes done in native code, so torch.save and safetensors' save_file (whose
files are opened in C++ and Rust) are wrapped as well; the other native writers (tokenizer.json, for one) come
with Python-level writes beside them (tokenizer_config.json) that the hook does see.
"""

import atexit
import json
import os
import sys

# audit event -> positions of the paths it changes
CHANGING = {"os.mkdir": (0,), "os.rename": (0, 1), "os.replace": (0, 1), "os.remove": (0,), "os.rmdir": (0,),
            "os.link": (1,), "os.symlink": (1,), "os.truncate": (0,), "shutil.rmtree": (0,), "shutil.copyfile": (1,)}
WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def main() -> None:
    report_dir, watched = sys.argv[1], os.path.realpath(sys.argv[2])
    touched = set()

    def note(path) -> None:
        if isinstance(path, (str, bytes, os.PathLike)):
            path = os.path.realpath(os.fsdecode(path))
            if path == watched or path.startswith(watched + os.sep):
                touched.add(os.path.relpath(path, watched))

    def hook(event: str, args: tuple) -> None:
        if event == "open":
            path, mode, flags = args
            if (mode is not None and any(c in mode for c in "wax+")) or (mode is None and flags & WRITE_FLAGS):
                note(path)
        elif event in CHANGING:
            for position in CHANGING[event]:
                note(args[position])

    def report() -> None:
        names = ("RANK", "LOCAL_RANK", "GROUP_RANK")
        record = {name.lower(): int(os.environ[name]) for name in names}
        record["touched"] = sorted(touched)
        os.makedirs(report_dir, exist_ok=True)
        with open(os.path.join(report_dir, f"rank-{record['rank']}.json"), "w", encoding="utf-8") as handle:
            json.dump(record, handle)

    def noting(save, position: int):
        def wrapper(*args, **kwargs):
            note(args[position] if len(args) > position else kwargs.get("f", kwargs.get("filename")))
            return save(*args, **kwargs)
        return wrapper

    import safetensors.torch
    import torch

    torch.save = noting(torch.save, 1)  # before colossalai and transformers bind these names
    safetensors.torch.save_file = noting(safetensors.torch.save_file, 1)
    sys.addaudithook(hook)
    atexit.register(report)

    from colossal_lang.errors import run_cli
    from train import main as train_main

    run_cli(train_main, sys.argv[3:])


if __name__ == "__main__":
    main()
