"""`bench_data.py scaling` and `bench_data.py packing` (see bench_data.py's docstring)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
DEFAULT_TOKENIZER = REPO / ".cache" / "models" / "SmolLM2-135M-Instruct"
CPU_SECONDS: list = []  # of every measured command, in order
SHARED_SAMPLE = REPO.parent.parent / "shared" / "data" / "pretrain"


def default_sample() -> Path:
    for candidate in (SHARED_SAMPLE, Path("/work/shared/data/pretrain"), REPO / "data" / "pretrain"):
        if candidate.is_dir():
            return candidate
    raise SystemExit("no sample folder found: pass --sample_dir")


def build_input(sample: Path, folder: Path, megabytes: float) -> int:
    """Copy the sample's {cs,en}/*.jsonl under new names into `folder` until `megabytes` are written; bytes written."""
    sources = sorted(sample.glob("*/*.jsonl"))
    written, copy = 0, 0
    while written < megabytes * 1e6:
        for source in sources:
            target = folder / source.parent.name / f"{source.stem}-{copy:04d}.jsonl"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
            written += target.stat().st_size
        copy += 1
    return written


# Runs a command, sampling the summed RSS of its whole process tree (workers included) every 0.1 s; prints wall
# seconds, peak bytes, exit code and the CPU seconds (user + system) of the whole tree.
MEASURE = """
import resource, subprocess, sys, tempfile, time, psutil
started = time.perf_counter()
log = tempfile.TemporaryFile()  # not a pipe: a chatty command would fill it and block while nobody reads
process = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=log)
root, peak = psutil.Process(process.pid), 0
while process.poll() is None:
    try:
        tree = [root] + root.children(recursive=True)
        peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
    except psutil.Error:
        pass
    time.sleep(0.1)
log.seek(0)
error = log.read().decode(errors="replace")
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(time.perf_counter() - started, peak, process.returncode, usage.ru_utime + usage.ru_stime)
if process.returncode:
    print(error[-3000:], file=sys.stderr)
"""


def measured(command, cwd=REPO, env=None) -> tuple:
    """(wall seconds, peak RSS MiB) of `command`; raises with its stderr when it fails. CPU seconds go to CPU_SECONDS."""
    result = subprocess.run([sys.executable, "-c", MEASURE, *map(str, command)], cwd=cwd, capture_output=True,
                            text=True, env=env)
    seconds, peak, code, cpu = result.stdout.split()
    if int(code):
        raise RuntimeError(f"{command[:3]} failed: {result.stderr[-2000:]}")
    CPU_SECONDS.append(float(cpu))
    return float(seconds), int(peak) / 2**20


RAW = """
import json, sys, time
from pathlib import Path
from transformers import AutoTokenizer
tokenizer = AutoTokenizer.from_pretrained(sys.argv[1])
tokenizer.model_max_length = 1 << 60
tokens, seconds, cpu, texts = 0, 0.0, 0.0, []
def encode():
    global tokens, seconds, cpu
    started, cpu_started = time.perf_counter(), time.process_time()
    encoded = tokenizer(texts, add_special_tokens=False, return_attention_mask=False)
    seconds += time.perf_counter() - started
    cpu += time.process_time() - cpu_started
    tokens += sum(len(ids) for ids in encoded["input_ids"])
for path in sorted(Path(sys.argv[2]).glob("*/*.jsonl")):
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            texts.append(json.loads(line)["target"])
            if len(texts) == 1000:
                encode(); texts = []
if texts:
    encode()
print(tokens, seconds, cpu)
"""


def raw_encoding(tokenizer_dir: Path, inputs: Path) -> tuple:
    """(tokens, seconds in the tokenizer calls only, peak MiB) of `tokenizer(texts)` over every record, streamed
    (CPU_SECONDS gets the CPU time of those calls only, every thread)."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as out:
        result_path = out.name
    script = RAW.replace("print(tokens, seconds, cpu)", f"open({result_path!r}, 'w').write(f'{{tokens}} {{seconds}} {{cpu}}')")
    _, peak = measured([sys.executable, "-c", script, tokenizer_dir, inputs], env=dict(os.environ, USE_TORCH="0"))
    tokens, seconds, cpu = Path(result_path).read_text().split()
    os.unlink(result_path)
    CPU_SECONDS[-1] = float(cpu)
    return int(tokens), float(seconds), peak


def ours(tokenizer_dir: Path, inputs: Path, output: Path, num_proc: int, max_length: int, *extra) -> tuple:
    command = [sys.executable, REPO / "prepare_pretrain_dataset.py", "--data_input_dirs", f"{inputs / 'cs'},{inputs / 'en'}",
               "--tokenizer_dir", tokenizer_dir, "--data_output_dirs", output, "--max_length", max_length,
               "--num_proc", num_proc, "--overwrite", *extra]
    seconds, peak = measured(command)
    manifest = json.loads((output / "manifest.json").read_text(encoding="utf-8"))
    tokens = sum(entry["input_tokens"] for entry in manifest["categories"].values())
    shutil.rmtree(output, ignore_errors=True)
    return tokens, seconds, peak, manifest.get("fill_ratio")


def combine_rows(tokenizer_dir: Path, inputs: Path, output: Path, max_length: int, num_procs, bins: int,
                 upsample: float) -> list:
    """The combine step alone: prepare once keeping the parts, then time reruns that find every part done and
    combine them into `bins` buckets of `upsample` × the input's tokens (same category shares), with each of
    `num_procs`; and a rerun finding the output done (start-up and hashing the inputs only), subtracted to give
    the writing alone. Rows of (run, output tokens, wall s, CPU s, peak MiB)."""
    base = [sys.executable, REPO / "prepare_pretrain_dataset.py", "--data_input_dirs", f"{inputs / 'cs'},{inputs / 'en'}",
            "--tokenizer_dir", tokenizer_dir, "--data_output_dirs", output, "--max_length", max_length, "--keep_parts"]
    measured([*base, "--overwrite"])
    categories = json.loads((output / "manifest.json").read_text(encoding="utf-8"))["categories"]
    total = sum(entry["tokens"] for entry in categories.values())
    weights = ",".join(f"{name}={entry['tokens'] / total:.6f}" for name, entry in categories.items())
    mix = [*base, "--num_spliced_dataset_bins", bins, "--category_weights", weights, "--total_tokens", int(upsample * total)]
    rows = []
    for num_proc in num_procs:
        seconds, peak = measured([*mix, "--num_proc", num_proc, "--overwrite"])
        tokens = sum(e["tokens"] for e in json.loads((output / "manifest.json").read_text(encoding="utf-8"))["categories"].values())
        rows.append((f"combine alone, --num_proc {num_proc}", tokens, seconds, CPU_SECONDS[-1], peak))
    start_up, start_up_peak = measured(mix)  # finds this very dataset: nothing to do
    start_up_cpu = CPU_SECONDS[-1]
    rows += [(f"{name}: writing only (minus start-up)", tokens, seconds - start_up, cpu - start_up_cpu, None)
             for name, tokens, seconds, cpu, _ in list(rows)]
    rows.append(("start-up + hashing only (output already there)", 0, start_up, start_up_cpu, start_up_peak))
    shutil.rmtree(output, ignore_errors=True)
    return rows


def colossal_llama(peer: Path, tokenizer_dir: Path, inputs: Path, output: Path, max_length: int, tokens: int) -> tuple:
    """Colossal-LLaMA's unmodified script on the same folders (tokens: ours, its own count is not printed)."""
    command = [sys.executable, peer / "dataset" / "prepare_pretrain_dataset.py", "--data_input_dirs",
               f"{inputs / 'cs'},{inputs / 'en'}", "--tokenizer_dir", tokenizer_dir, "--data_output_dirs", output,
               "--max_length", max_length, "--num_spliced_dataset_bins", 1]
    env = dict(os.environ, PYTHONPATH=f"{peer}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
               HF_DATASETS_CACHE=str(output / "hf-cache"))
    seconds, peak = measured(command, cwd=output.parent, env=env)
    shutil.rmtree(output, ignore_errors=True)
    return tokens, seconds, peak


def scaling_main(argv) -> None:
    parser = argparse.ArgumentParser(description="bench_data.py scaling")
    parser.add_argument("--tokenizer_dir", default=str(DEFAULT_TOKENIZER))
    parser.add_argument("--sample_dir", default=None, help="folder with {cs,en}/*.jsonl (default: the shared sample)")
    parser.add_argument("--sizes", default="20,100,500", help="input sizes in MB, comma-separated")
    parser.add_argument("--max_length", type=int, default=2048)
    parser.add_argument("--colossal_llama", default=None, help="a Colossal-LLaMA checkout (its row is skipped without it)")
    parser.add_argument("--colossal_max_mb", type=float, default=100, help="largest size Colossal-LLaMA is run on")
    parser.add_argument("--combine_row", action="store_true",
                        help="also time the combine step alone, with each of --num_procs")
    parser.add_argument("--combine_bins", type=int, default=4,
                        help="--num_spliced_dataset_bins of the combine rows: buckets the workers can write at once")
    parser.add_argument("--combine_upsample", type=float, default=4,
                        help="the combine rows write this many times the input's tokens (--total_tokens, same shares)")
    parser.add_argument("--raw_max_mb", type=float, default=1e9, help="largest size the raw tokenizer row is run on")
    parser.add_argument("--num_procs", default="1,2", help="--num_proc values our CLI is run with")
    parser.add_argument("--work_dir", default=None, help="where inputs and outputs are written (default: a temp folder)")
    args = parser.parse_args(argv)
    sample = Path(args.sample_dir) if args.sample_dir else default_sample()
    tokenizer_dir = Path(args.tokenizer_dir)
    work = Path(tempfile.mkdtemp(prefix="bench-scaling-", dir=args.work_dir))
    print(f"sample {sample}; tokenizer {tokenizer_dir.name}; max_length {args.max_length}; {os.cpu_count()} CPU cores; "
          f"load average {os.getloadavg()[0]:.1f} at start")
    print("| input MB | run | tokens | wall s | tokens/s | × raw | CPU s | tokens per CPU s | peak RSS MiB | fill |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    combine_table = []
    try:
        for size in (float(text) for text in args.sizes.split(",")):
            inputs = work / f"in-{size:g}"
            megabytes = build_input(sample, inputs, size) / 1e6
            raw_rate = None

            def report(name, tokens, seconds, peak, fill=None):
                rate = tokens / seconds
                ratio = "-" if raw_rate is None else f"{rate / raw_rate:.2f}"
                fill_text = "-" if fill is None else f"{fill:.2%}"
                print(f"| {megabytes:,.0f} | {name} | {tokens:,} | {seconds:,.1f} | {rate:,.0f} | {ratio} | "
                      f"{CPU_SECONDS[-1]:,.1f} | {tokens / CPU_SECONDS[-1]:,.0f} | {peak:,.0f} | {fill_text} |", flush=True)

            if size <= args.raw_max_mb:
                raw_tokens, raw_seconds, raw_peak = raw_encoding(tokenizer_dir, inputs)
                raw_rate = raw_tokens / raw_seconds
                report("raw `tokenizer(texts)` (tokenizer calls only)", raw_tokens, raw_seconds, raw_peak)
            for num_proc in (int(text) for text in args.num_procs.split(",")):
                tokens, seconds, peak, fill = ours(tokenizer_dir, inputs, work / "out", num_proc, args.max_length)
                report(f"ours, --num_proc {num_proc}", tokens, seconds, peak, fill)
            if args.combine_row:
                combine_table.append((megabytes, combine_rows(
                    tokenizer_dir, inputs, work / "out", args.max_length, [int(t) for t in args.num_procs.split(",")],
                    args.combine_bins, args.combine_upsample)))
            if args.colossal_llama and size <= args.colossal_max_mb:
                report("Colossal-LLaMA prepare_pretrain_dataset.py",
                       *colossal_llama(Path(args.colossal_llama), tokenizer_dir, inputs, work / "cl-out", args.max_length, tokens))
            shutil.rmtree(inputs, ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if combine_table:
        print(f"\nThe combine step alone ({args.combine_bins} buckets, {args.combine_upsample:g}× the input's tokens):")
        print("| input MB | run | output tokens | wall s | tokens/s | CPU s | tokens per CPU s | peak RSS MiB |")
        print("|---:|---|---:|---:|---:|---:|---:|---:|")
        for megabytes, rows in combine_table:
            for name, tokens, seconds, cpu, peak in rows:
                rate = f"{tokens / seconds:,.0f}" if tokens else "-"
                per_cpu = f"{tokens / cpu:,.0f}" if tokens else "-"
                print(f"| {megabytes:,.0f} | {name} | {tokens:,} | {seconds:,.1f} | {rate} | {cpu:,.1f} | {per_cpu} | "
                      f"{'-' if peak is None else f'{peak:,.0f}'} |")


def packing_main(argv) -> None:
    """Fill ratio of windowed packing (several window sizes) against packing each category whole."""
    import numpy as np

    from colossal_lang.data.chunking import chunk_spans
    from colossal_lang.data.packing import WindowPacker, pack_spans
    from colossal_lang.data.tokenized_corpus import load_tokenizer

    parser = argparse.ArgumentParser(description="bench_data.py packing")
    parser.add_argument("--tokenizer_dir", default=str(DEFAULT_TOKENIZER))
    parser.add_argument("--sample_dir", default=None)
    parser.add_argument("--max_length", type=int, default=2048)
    parser.add_argument("--windows", default="65536,1048576,8388608", help="packing windows in tokens")
    args = parser.parse_args(argv)
    sample = Path(args.sample_dir) if args.sample_dir else default_sample()
    tokenizer = load_tokenizer(args.tokenizer_dir)
    print(f"sample {sample}, max_length {args.max_length}; fill = tokens / (rows × max_length)")
    print("| category | tokens | global best-fit rows | fill | window | rows | fill | Δ fill (points) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for category in sorted(path.name for path in sample.iterdir() if path.is_dir()):
        lengths = []
        for path in sorted((sample / category).glob("*.jsonl")):
            texts = [json.loads(line)["target"] for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
            for start in range(0, len(texts), 1000):
                lengths += [len(ids) + 1 for ids in tokenizer(texts[start:start + 1000], add_special_tokens=False)["input_ids"]]
        lengths = np.asarray(lengths, dtype=np.int64)
        spans = chunk_spans(np.cumsum(lengths) - lengths, lengths, args.max_length)
        tokens = int(spans.lengths.sum())
        global_rows = len(pack_spans(spans.lengths, args.max_length))
        global_fill = tokens / (global_rows * args.max_length)
        for window in (int(text) for text in args.windows.split(",")):
            emitted = []
            packer = WindowPacker(args.max_length, window, lambda ids, learned, starts, lens, rows: emitted.append(len(rows)))
            flat = np.zeros(int(lengths.sum()), dtype=np.int32)
            for start in range(0, len(spans.lengths), 1000):  # fed in batches, as the pipeline does
                packer.add(flat, flat.astype(bool), spans.starts[start:start + 1000], spans.lengths[start:start + 1000])
            packer.finish()
            fill = tokens / (sum(emitted) * args.max_length)
            print(f"| {category} | {tokens:,} | {global_rows:,} | {global_fill:.2%} | {window:,} | {sum(emitted):,} | "
                  f"{fill:.2%} | {100 * (fill - global_fill):+.2f} |", flush=True)
