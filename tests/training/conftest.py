"""Fixtures for training tests: a tiny LLaMA with SmolLM2's real tokenizer, prepared datasets, and launchers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from colossal_lang.testing.faults import ENVIRONMENT as FAULTS
from colossal_lang.testing.prepared import read_texts, write_prepared_dataset

REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_command(nproc: int, script_args: list, script: str = "train.py") -> list:
    return [str(VENV_BIN / "torchrun"), f"--nproc_per_node={nproc}", f"--master_port={free_port()}",
            str(REPO_ROOT / script), *map(str, script_args)]


def environment(faults: str = "") -> dict:
    """The workers' environment; `faults` arms colossal_lang.testing.faults (e.g. "save_kill@4")."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO_ROOT), TOKENIZERS_PARALLELISM="false")
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env[FAULTS] = faults
    return env


def run_training(nproc: int, args: list, timeout: int = 300, check: bool = True, faults: str = "") -> subprocess.CompletedProcess:
    """train.py under torchrun with `nproc` CPU workers over gloo (real processes)."""
    result = subprocess.run(torchrun_command(nproc, args), cwd=REPO_ROOT, env=environment(faults),
                            capture_output=True, text=True, timeout=timeout)
    if check and result.returncode != 0:
        raise AssertionError(f"train.py failed ({result.returncode}):\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


def run_many(runs: list, timeout: int = 400) -> subprocess.CompletedProcess:
    """Several single-process trainings in one interpreter (one import of torch/colossalai for all); a run is an
    argv list, or (argv, faults) to arm colossal_lang.testing.faults for that run only."""
    runs = [run if isinstance(run, tuple) else (run, "") for run in runs]
    spec = json.dumps([{"argv": list(map(str, argv)), "faults": faults} for argv, faults in runs])
    result = subprocess.run(torchrun_command(1, [spec], script="tests/training/run_many.py"), cwd=REPO_ROOT,
                            env=environment(), capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"run_many failed:\n{result.stdout[-3000:]}\n{result.stderr[-6000:]}")
    return result


STEPS = 8  # optimizer steps of the reference 2-worker run


def base_args(model_dir, dataset, save_dir, **overrides) -> list:
    flags = {"pretrained": model_dir, "dataset": dataset, "plugin": "ddp", "mixed_precision": "fp32",
             "batch_size": 2, "max_steps": STEPS, "save_interval": 2, "save_dir": save_dir, "lr": 1e-2,
             "warmup_steps": 2, "weight_decay": 0.1, "seed": 7, "loss_log": Path(save_dir) / "log.jsonl",
             "progress": "false", "log_samples": None, "use_neft": None}
    flags.update(overrides)
    argv = []
    for name, value in flags.items():
        if value is False:
            continue
        argv.append(f"--{name}")
        if value is not None:
            argv.append(str(value))
    return argv


@pytest.fixture(scope="session")
def uninterrupted(tiny_model_dir, packed_dataset, tmp_path_factory):
    save_dir = tmp_path_factory.mktemp("uninterrupted")
    run_training(2, base_args(tiny_model_dir, packed_dataset, save_dir))
    return save_dir



def read_log(path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def step_records(path) -> list[dict]:
    return [r for r in read_log(path) if "event" not in r]


def assert_same_steps(records: list[dict], reference_log) -> None:
    """Every record's loss and rows are exactly those of the reference run's record for the same step."""
    expected = {r["step"]: r for r in step_records(reference_log)}
    for record in records:
        assert record["loss"] == expected[record["step"]]["loss"], record["step"]
        assert record["samples"] == expected[record["step"]]["samples"], record["step"]


@pytest.fixture(scope="session")
def tiny_model_dir(smollm2_tokenizer, tmp_path_factory) -> Path:
    """A 2-layer, 64-wide LLaMA (tied embeddings) over SmolLM2's real 49152-token vocabulary."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=len(smollm2_tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         tie_word_embeddings=True, bos_token_id=1, eos_token_id=2, pad_token_id=2)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    out = tmp_path_factory.mktemp("tiny-llama")
    model.save_pretrained(out)
    smollm2_tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def packed_dataset(smollm2_tokenizer, tmp_path_factory) -> Path:
    """Czech and English text packed into 64-token rows, two buckets."""
    texts = {"cs": read_texts("cs/fortunes.jsonl", 60), "en": read_texts("en/state_of_the_union.jsonl", 6)}
    return write_prepared_dataset(tmp_path_factory.mktemp("packed"), smollm2_tokenizer, texts, max_length=64, num_buckets=2)


@pytest.fixture(scope="session")
def ragged_dataset(smollm2_tokenizer, tmp_path_factory) -> Path:
    """One document per row, 5 to 48 tokens, first 3 labels masked: micro-batches differ in loss tokens."""
    texts = {"cs": [t[: 20 + 13 * (i % 9)] for i, t in enumerate(read_texts("cs/fortunes.jsonl", 40))]}
    return write_prepared_dataset(tmp_path_factory.mktemp("ragged"), smollm2_tokenizer, texts, max_length=48,
                                  mask_first_tokens=3, one_document_per_row=True)
