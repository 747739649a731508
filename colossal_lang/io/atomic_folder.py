"""Writing a folder all at once: every stage's output (tokenizer, model, dataset, imported base model).

The folder is built in a hidden sibling (`.<name>.partial-<pid>`), synced to disk, and renamed into place
only when every file is written, so a run killed part way (SIGKILL, a full disk) never leaves an output
folder that looks complete, and the previous output stays as it was. The next run removes what dead runs
left behind; a live run's staging folder is left alone.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

STAGING_KINDS = ("partial", "replaced")


@contextmanager
def staged_folder(output_dir) -> Iterator[Path]:
    """Yield an empty staging folder beside `output_dir`; on success it replaces `output_dir` in one rename.

    On an exception the staging folder is removed and `output_dir` is left as it was.
    """
    output_dir = Path(output_dir)
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_siblings(output_dir)
    staging = _sibling(output_dir, "partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
        fsync_tree(staging)
        replace_folder(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def replace_folder(staging: Path, output_dir: Path) -> None:
    """Move a finished `staging` folder to `output_dir`; an existing output is moved aside first, not deleted,
    so that a crash between the two renames leaves it in `.<name>.replaced-<pid>`, restored by the next run."""
    staging, output_dir = Path(staging), Path(output_dir)
    if output_dir.exists():
        replaced = _sibling(output_dir, "replaced")
        shutil.rmtree(replaced, ignore_errors=True)
        os.replace(output_dir, replaced)
        os.replace(staging, output_dir)
        shutil.rmtree(replaced, ignore_errors=True)
    else:
        os.replace(staging, output_dir)


def remove_stale_siblings(output_dir: Path) -> None:
    """Clear what runs whose process is gone left beside `output_dir`.

    Their staging folders are deleted; an output they had moved aside but not yet replaced (the run died
    between the two renames of `replace_folder`) is put back when `output_dir` is missing.
    """
    for kind in STAGING_KINDS:
        for stale in output_dir.parent.glob(f".{output_dir.name}.{kind}-*"):
            pid = stale.name.rsplit("-", 1)[-1]
            if pid.isdigit() and int(pid) != os.getpid() and process_alive(int(pid)):
                continue
            if kind == "replaced" and not output_dir.exists():
                os.replace(stale, output_dir)
            else:
                shutil.rmtree(stale, ignore_errors=True)


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def fsync_tree(root: Path) -> None:
    """Flush every file under `root`, and `root` itself, to disk before it is renamed into place."""
    root = Path(root)
    for path in sorted(root.rglob("*")):
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    descriptor = os.open(root, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _sibling(output_dir: Path, kind: str) -> Path:
    return output_dir.parent / f".{output_dir.name}.{kind}-{os.getpid()}"
