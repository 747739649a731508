"""Data preparation benchmarks: `throughput` (default), `scaling` (growing input) and `packing` (fill ratio).

throughput: `prepare_pretrain_dataset.py` against raw fast-tokenizer batch encoding of the same text.

Both run in the same invocation on the same text (the embedded Czech + English pretraining corpus,
repeated `--repeat` times under different file names): the baseline is the tokenizer's batch
encoding alone (`tokenizer(texts)`: Rust, all cores, no offsets, nothing written). A second,
stricter reference is the Rust backend's `encode_batch_fast`, which skips the Python wrapper; the
pipeline calls that backend itself, so it can beat the first baseline. Baseline and in-process runs are
interleaved over `--rounds` and the best time of each is kept (on a shared machine noise only adds
time; the peak RSS shown is the highest of the rounds). The pipeline is the
whole preparation (validation, tokenization, chunking, packing, mixing, arrow + manifest), timed
in process (imports done, as for the baseline) and as the CLI in a subprocess (interpreter start-up
and the ~1 s of imports included; peak RSS measured there, worker processes included).
Goal: pipeline ≥ 0.7 × raw with `--num_proc 2`.

    .venv/bin/python benchmarks/bench_data.py [throughput] [--repeat 4] [--max_length 1024]

scaling: the real sample (`--sample_dir`, default ../shared/data/pretrain, else data/pretrain) copied under new
file names until each of `--sizes` MB is reached; per size, in the same run: raw fast-tokenizer encoding of
the same text (only the tokenizer calls timed), our CLI with --num_proc 1 and 2 (defaults otherwise), and
Colossal-LLaMA's dataset/prepare_pretrain_dataset.py when `--colossal_llama DIR` is given (up to
`--colossal_max_mb`). Peak RSS is the highest sum over the process tree (psutil, sampled every 0.1 s).
`--combine_row` adds a table of the combine step alone (parts already prepared) with each of `--num_procs`, into
`--combine_bins` buckets of `--combine_upsample` × the input's tokens, and that minus start-up and hashing.

    .venv/bin/python benchmarks/bench_data.py scaling --sizes 20,100,500 [--colossal_llama ../shared/peers/Colossal-LLaMA]

packing: fill ratio (tokens / rows × max_length) of windowed best-fit packing against packing every
document of a category at once, on the tokenized sample.

    .venv/bin/python benchmarks/bench_data.py packing [--max_length 2048]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: the package lives at the repo root
DEFAULT_TOKENIZER = REPO / ".cache" / "models" / "SmolLM2-135M-Instruct"


def build_corpus(folder: Path, repeat: int) -> list:
    """Copy data/pretrain/{cs,en} `repeat` times into `folder`; return every target text."""
    texts = []
    for language in ("cs", "en"):
        for source in sorted((REPO / "data" / "pretrain" / language).glob("*.jsonl")):
            lines = source.read_text(encoding="utf-8").splitlines()
            for copy in range(repeat):
                target = folder / language / f"{source.stem}-{copy}.jsonl"
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text("\n".join(lines) + "\n", encoding="utf-8")
                texts.extend(json.loads(line)["target"] for line in lines)
    return texts


def raw_tokens_per_second(tokenizer_dir: Path, texts: list, batch_size: int = 1000) -> tuple:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    tokenizer.model_max_length = 1 << 60
    started = time.perf_counter()
    tokens = 0
    for start in range(0, len(texts), batch_size):
        encoded = tokenizer(texts[start:start + batch_size], add_special_tokens=False, return_attention_mask=False)
        tokens += sum(len(ids) for ids in encoded["input_ids"])
    seconds = time.perf_counter() - started
    return tokens, seconds


def backend_tokens_per_second(tokenizer_dir: Path, texts: list, batch_size: int = 1000) -> tuple:
    """The Rust tokenizer's own batch call without offsets (what the pipeline calls for plain text)."""
    from tokenizers import Tokenizer

    backend = Tokenizer.from_file(str(tokenizer_dir / "tokenizer.json"))
    started = time.perf_counter()
    tokens = 0
    for start in range(0, len(texts), batch_size):
        tokens += sum(len(encoding.ids) for encoding in backend.encode_batch_fast(texts[start:start + batch_size], add_special_tokens=False))
    return tokens, time.perf_counter() - started


# Runs the CLI and prints its wall time and peak RSS (KiB, its worker processes included). A separate small
# process, because RUSAGE_CHILDREN of this one would also count the forked workers of the in-process runs.
MEASURE_CLI = (
    "import resource, subprocess, sys, time\n"
    "started = time.perf_counter()\n"
    "subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
    "print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
)


def pipeline_run(tokenizer_dir: Path, inputs: Path, output: Path, num_proc: int, max_length: int) -> tuple:
    command = [sys.executable, str(REPO / "prepare_pretrain_dataset.py"),
               "--data_input_dirs", f"{inputs / 'cs'},{inputs / 'en'}", "--tokenizer_dir", str(tokenizer_dir),
               "--data_output_dirs", str(output), "--max_length", str(max_length), "--num_proc", str(num_proc),
               "--category_weights", "cs=0.75,en=0.25", "--overwrite"]
    measured = subprocess.run([sys.executable, "-c", MEASURE_CLI, *command], check=True, cwd=REPO,
                              capture_output=True, text=True).stdout.split()
    seconds, peak_kib = float(measured[0]), int(measured[1])
    manifest = json.loads((output / "manifest.json").read_text(encoding="utf-8"))
    input_tokens = sum(entry["input_tokens"] for entry in manifest["categories"].values())
    return input_tokens, seconds, peak_kib / 1024


def pipeline_in_process(tokenizer_dir: Path, inputs: Path, output: Path, num_proc: int, max_length: int) -> tuple:
    import contextlib
    import io

    from colossal_lang.data.prepare_pretrain import main as prepare_main

    argv = ["--data_input_dirs", f"{inputs / 'cs'},{inputs / 'en'}", "--tokenizer_dir", str(tokenizer_dir),
            "--data_output_dirs", str(output), "--max_length", str(max_length), "--num_proc", str(num_proc),
            "--category_weights", "cs=0.75,en=0.25", "--overwrite"]
    started = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
        manifest = prepare_main(argv)
    seconds = time.perf_counter() - started
    return sum(entry["input_tokens"] for entry in manifest["categories"].values()), seconds


def throughput_main(argv) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizer_dir", default=str(DEFAULT_TOKENIZER))
    parser.add_argument("--repeat", type=int, default=4, help="copies of the embedded corpus")
    parser.add_argument("--max_length", type=int, default=1024)
    parser.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the best time of each run is kept")
    args = parser.parse_args(argv)
    if not Path(args.tokenizer_dir).is_dir():
        from colossal_lang.model.import_smollm2 import import_smollm2

        import_smollm2(DEFAULT_TOKENIZER)
    work = Path(tempfile.mkdtemp(prefix="bench-data-"))
    try:
        texts = build_corpus(work / "in", args.repeat)
        size_mb = sum(len(text.encode()) for text in texts) / 1e6
        tokenizer_dir = Path(args.tokenizer_dir)
        # Rounds interleave the runs; the best of each is kept (the machine is shared, noise only adds time).
        best = {}
        for round_index in range(args.rounds):
            raw_tokens, seconds = raw_tokens_per_second(tokenizer_dir, texts)
            best["raw"] = min(best.get("raw", (0, 1e9)), (raw_tokens, seconds), key=lambda item: item[1])
            result = backend_tokens_per_second(tokenizer_dir, texts)
            best["backend"] = min(best.get("backend", (0, 1e9)), result, key=lambda item: item[1])
            for num_proc in (1, 2):
                result = pipeline_in_process(tokenizer_dir, work / "in", work / f"in-process{num_proc}", num_proc, args.max_length)
                key = f"in-process {num_proc}"
                best[key] = min(best.get(key, (0, 1e9)), result, key=lambda item: item[1])
                tokens, seconds, peak_mib = pipeline_run(tokenizer_dir, work / "in", work / f"cli{num_proc}", num_proc, args.max_length)
                key = f"cli {num_proc}"
                fastest = min(best.get(key, (0, 1e9, 0))[:2], (tokens, seconds), key=lambda item: item[1])
                best[key] = (*fastest, max(best.get(key, (0, 0, 0))[2], peak_mib))  # peak RSS: the highest seen
        rows = [("raw fast-tokenizer batch encoding", *best["raw"], None),
                ("raw Rust backend `encode_batch_fast` (stricter reference)", *best["backend"], None)]
        rows += [(f"prepare_pretrain, in process, --num_proc {n}", *best[f"in-process {n}"], None) for n in (1, 2)]
        rows += [(f"prepare_pretrain_dataset.py CLI (start-up included), --num_proc {n}", *best[f"cli {n}"]) for n in (1, 2)]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    raw_rate = best["raw"][0] / best["raw"][1]
    print(f"corpus: {len(texts)} documents, {size_mb:.1f} MB of text; tokenizer {Path(args.tokenizer_dir).name}; "
          f"max_length {args.max_length}; {os.cpu_count()} CPU cores ({platform.processor() or platform.machine()})")
    print("| run | tokens | seconds | tokens/s | × raw | peak RSS (MiB) |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, tokens, seconds, peak in rows:
        rate = tokens / seconds
        peak_text = "-" if peak is None else f"{peak:.0f}"
        print(f"| {name} | {tokens:,} | {seconds:.2f} | {rate:,.0f} | {rate / raw_rate:.2f} | {peak_text} |")


def main() -> None:
    from bench_data_scaling import packing_main, scaling_main

    commands = {"throughput": throughput_main, "scaling": scaling_main, "packing": packing_main}
    argv = sys.argv[1:]
    command = argv.pop(0) if argv and argv[0] in commands else "throughput"
    commands[command](argv)


if __name__ == "__main__":
    main()
