"""GPU check: every Booster plugin trained, saved and resumed, and MFU of a ~1.1B model, on one CUDA machine.

Two parts, run in this order (the most informative first, so a time budget cuts the least useful):

  plugins  SmolLM2-shaped model, each plugin (ddp, gemini, gemini_auto, zero2, zero2_cpu, 3d with --tp 1
           --zero_stage 1 on one GPU; --tp 2 on 2+ GPUs, and --pp 2 on 4+) in bf16, then again in fp16 (every plugin scales fp16 losses: the
           Booster ones with their own scaler, ddp with torch AMP's). Each case is two launches of train.py:
           `--max_steps 2S --stop_at_step S` (saves at S), then `--load_checkpoint latest` to 2S.
           Gradient accumulation (default 2) and gradient checkpointing are on.
  mfu      the ~1.1B LLaMA-shaped model (gpu_models.one_b_model), zero2 and gemini, bf16, SDPA,
           plain causal attention (the reference) and document-causal packing (4D mask through SDPA: what
           train.py offers), sequence 2048, no gradient checkpointing. One launch per case, ended by this
           script once its last step is logged, so no ~13 GB checkpoint is written.

Per case: tokens/s and MFU (median over the steps after each launch's warm-up; formula and peak table in
docs/training.md), peak GPU memory, and whether the resumed half continued (steps S+1..2S logged after
"resumed from"). Each launch's whole output is kept under --out (logs/<case>/), each row is printed when its
case finishes and appended to rows.jsonl, table.md is rewritten after every row; a launch that runs past
--timeout is killed with its workers and reported, and the next case still runs. --budget_s stops starting
cases when the total time is spent (they are reported as skipped).

    python benchmarks/gpu_check.py --out OUT [--parts plugins mfu] [--plugins ...] [--precisions bf16 fp16]
                                   [--steps 3] [--timeout 300] [--budget_s 0] [--smollm2_config DIR] [--dry_run]

Without CUDA it refuses (exit 2) before doing anything, except --dry_run (prints every planned command).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Optional

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(REPO_ROOT / "benchmarks"))

from gpu_launch import LaunchResult, run_launch  # noqa: E402

SMOLLM2 = REPO_ROOT / ".cache" / "models" / "SmolLM2-135M-Instruct"
PLUGINS = ("ddp", "gemini", "gemini_auto", "zero2", "zero2_cpu", "3d")
MIN_LAUNCH_S = 45  # a launch given less than this would only time out: skip its case instead


@dataclass(frozen=True)
class Case:
    model: str  # "smollm2" or "1b" (keys of the models dict)
    plugin: str
    precision: str
    attention: str = "auto"  # auto = what the dataset was packed for (doc_causal)
    resume: bool = True  # False: one measuring launch, ended once its last step is logged
    accumulation_steps: int = 2
    grad_checkpoint: bool = True
    batch_size: int = 8

    @property
    def name(self) -> str:
        return f"{self.model}-{self.plugin}-{self.precision}-{self.attention}"


def plugin_flags(plugin: str, gpus: int) -> list[str]:
    """3d: ZeRO-1; --tp 2 on 2+ GPUs (else --tp 1), and --pp 2 with micro-batches of 2 on 4+ GPUs."""
    if plugin != "3d":
        return []
    flags = ["--tp", "2" if gpus >= 2 else "1", "--zero_stage", "1"]
    if gpus >= 4:
        flags += ["--pp", "2", "--microbatch_size", "2"]
    return flags


def accumulation_steps(case: "Case", gpus: int) -> int:
    """Pipelines split --batch_size into micro-batches instead (train.py refuses --accumulation_steps with --pp)."""
    return 1 if "--pp" in plugin_flags(case.plugin, gpus) else case.accumulation_steps


def plan_cases(parts: list[str], plugins: list[str], precisions: list[str], mfu_plugins: list[str],
               attentions: list[str], accumulation_steps: int, batch_size: int, mfu_batch_size: int) -> list[Case]:
    """All cases in run order: bf16 plugin checks, then MFU, then the other precisions' plugin checks."""
    def plugin_cases(precision: str) -> list[Case]:
        return [Case("smollm2", p, precision, accumulation_steps=accumulation_steps, batch_size=batch_size) for p in plugins]

    cases = []
    if "plugins" in parts and precisions:
        cases += plugin_cases(precisions[0])
    if "mfu" in parts:
        cases += [Case("1b", p, "bf16", attention=a, resume=False, accumulation_steps=1, grad_checkpoint=False,
                       batch_size=mfu_batch_size) for p in mfu_plugins for a in attentions]
    if "plugins" in parts:
        for precision in precisions[1:]:
            cases += plugin_cases(precision)
    return cases


def train_argv(case: Case, model_dir: Path, data_dir: Path, save_dir: Path, loss_log: Path, max_steps: int,
               gpus: int, flash: bool) -> list[str]:
    """train.py's flags shared by a case's launches (the resume adds --load_checkpoint latest)."""
    return ["--pretrained", str(model_dir), "--dataset", str(data_dir), "--plugin", case.plugin,
            *plugin_flags(case.plugin, gpus), "--mixed_precision", case.precision,
            "--batch_size", str(case.batch_size), "--accumulation_steps", str(accumulation_steps(case, gpus)),
            "--max_steps", str(max_steps), "--save_interval", "0", "--save_dir", str(save_dir),
            "--lr", "1e-4", "--warmup_steps", "1", "--attention", case.attention,
            *(["--use_grad_checkpoint"] if case.grad_checkpoint else []), *(["--use_flash_attn"] if flash else []),
            "--loss_log", str(loss_log), "--progress", "false"]


def launches(case: Case, common: list[str], steps: int) -> list[tuple[str, list[str]]]:
    """(name, train.py argv) of each launch of the case, in order."""
    if not case.resume:
        return [("1-measure", common)]
    return [("1-save", common + ["--stop_at_step", str(steps)]), ("2-resume", common + ["--load_checkpoint", "latest"])]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def torchrun_command(argv: list[str], gpus: int) -> list[str]:
    """`python -m torch.distributed.run`: the launcher of whichever interpreter runs this, with no PATH lookup."""
    return [sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={gpus}", f"--master_port={free_port()}",
            str(REPO_ROOT / "train.py"), *argv]


def launch_env() -> dict:
    path = os.pathsep.join(p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
    return dict(os.environ, PYTHONPATH=path, PYTHONUNBUFFERED="1", TOKENIZERS_PARALLELISM="false")


def read_steps(loss_log: Path) -> list[dict]:
    if not loss_log.is_file():
        return []
    records = []
    for line in loss_log.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by a kill
            continue
        if "event" not in record:
            records.append(record)
    return records


def summarise(case: Case, records: list[dict], results: list[tuple[str, LaunchResult]], steps: int,
              max_steps: int, warmup_steps: int) -> dict:
    """The row's measured values: throughput after warm-up, peak memory, and whether the resume continued."""
    if case.resume:  # the first step of each launch includes its warm-up
        timed = [r for r in records if r["step"] not in (1, steps + 1)]
    else:
        timed = [r for r in records if r["step"] > min(warmup_steps, max_steps - 1)]
    row = {}
    if timed:
        row["tokens_per_s"] = statistics.median(r["tokens_per_s"] for r in timed)
        if any("mfu" in r for r in timed):
            row["mfu"] = statistics.median(r.get("mfu", 0.0) for r in timed)
    peaks = [r.get("memory/peak_allocated_gib", r.get("memory/peak_rss_gib", 0.0)) for r in records]
    if peaks:
        row["peak_gib"] = max(peaks)
    row["steps_logged"] = [r["step"] for r in records]
    if case.resume:
        resumed_log = results[1][1].tail(10**7) if len(results) == 2 else ""
        row["resumed"] = (row["steps_logged"] == list(range(1, max_steps + 1)) and "resumed from" in resumed_log)
    return row


@dataclass
class Settings:
    """What every case of one run shares."""
    work: Path  # checkpoints (deleted after each case unless keep_checkpoints)
    out: Path  # logs/<case>/, rows.jsonl, table.md
    steps: int = 3  # plugin checks save at S and finish at 2S
    mfu_steps: int = 10
    warmup_steps: int = 2  # MFU launches: steps left out of the timing
    gpus: int = 1
    flash: bool = False
    timeout_s: float = 300.0
    deadline: float = float("inf")  # time.time() after which no launch starts
    keep_checkpoints: bool = False
    command_for: Callable[[list[str], int], list[str]] = torchrun_command  # train.py argv -> the launch command


def run_case(case: Case, model_dir: Path, data_dir: Path, settings: Settings) -> dict:
    """Run one case's launches (stopping at the first failure) and return its row."""
    steps = settings.steps
    case_logs = settings.out / "logs" / case.name
    shutil.rmtree(case_logs, ignore_errors=True)
    save_dir = settings.work / "checkpoints" / case.name
    shutil.rmtree(save_dir, ignore_errors=True)
    loss_log = case_logs / "steps.jsonl"
    max_steps = 2 * steps if case.resume else settings.mfu_steps
    common = train_argv(case, model_dir, data_dir, save_dir, loss_log, max_steps, settings.gpus, settings.flash)
    row = {"case": case.name, **asdict(case), "plugin_flags": " ".join(plugin_flags(case.plugin, settings.gpus)),
           "status": "ok", "launches": []}
    row["accumulation_steps"] = accumulation_steps(case, settings.gpus)
    started = time.perf_counter()
    results: list[tuple[str, LaunchResult]] = []
    for launch_name, argv in launches(case, common, steps):
        remaining = settings.deadline - time.time()
        if remaining < MIN_LAUNCH_S:
            row["status"] = f"skipped at {launch_name}: time budget spent"
            break
        measured = None if case.resume else (lambda: any(r["step"] >= max_steps for r in read_steps(loss_log)))
        result = run_launch(settings.command_for(argv, settings.gpus), case_logs / f"{launch_name}.log",
                            min(settings.timeout_s, remaining), env=launch_env(), cwd=REPO_ROOT, done=measured)
        results.append((launch_name, result))
        row["launches"].append({"name": launch_name, "seconds": round(result.seconds, 1), "exit": result.returncode,
                                "timed_out": result.timed_out, "ended_early": result.ended_early})
        if result.timed_out:
            row["status"] = f"TIMED OUT in {launch_name} after {result.seconds:.0f} s (killed with its workers)"
            break
        if not result.ok:
            row["status"] = f"FAILED in {launch_name} (exit {result.returncode})"
            row["error"] = result.last_line()
            break
    row["wall_s"] = time.perf_counter() - started
    row.update(summarise(case, read_steps(loss_log), results, steps, max_steps, settings.warmup_steps))
    if not case.resume and row["status"] == "ok" and not row.get("steps_logged"):
        row["status"] = "FAILED: no step logged"
    if case.resume and row["status"] == "ok" and not row.get("resumed"):
        row["status"] = "FAILED: the resumed launch did not continue at step S+1"
    if not settings.keep_checkpoints:
        shutil.rmtree(save_dir, ignore_errors=True)  # ~2 GB per SmolLM2 case: 64 GiB of disk hold few
    return row


TABLE_HEADER = ("| model | plugin | precision | attention | accum | save+resume | tokens/s | MFU | peak GiB | wall s | status |\n"
                "|---|---|---|---|---:|---|---:|---:|---:|---:|---|")


def table_line(row: dict) -> str:
    plugin = f"{row['plugin']} {row['plugin_flags']}".strip()
    resumed = ("yes" if row.get("resumed") else "no") if row["resume"] else "(not saved)"
    mfu = f"{100 * row['mfu']:.1f}%" if "mfu" in row else "-"
    status = row["status"] + (f": {row['error'][:100]}" if row.get("error") else "")
    return (f"| {row['model']} | {plugin} | {row['precision']} | {row['attention']} | {row['accumulation_steps']} | "
            f"{resumed} | {row.get('tokens_per_s', 0):.0f} | {mfu} | {row.get('peak_gib', 0):.1f} | "
            f"{row['wall_s']:.0f} | {status.replace('|', '/')} |")


def ratio_lines(rows: list[dict]) -> list[str]:
    """Document-causal throughput against causal, per plugin, both measured in this run."""
    lines = []
    for plugin in dict.fromkeys(r["plugin"] for r in rows if not r["resume"]):
        by_attention = {r["attention"]: r for r in rows if not r["resume"] and r["plugin"] == plugin}
        causal, doc = by_attention.get("causal", {}), by_attention.get("doc_causal", {})
        if causal.get("tokens_per_s") and doc.get("tokens_per_s"):
            lines.append(f"- {plugin}: doc_causal / causal tokens/s = {doc['tokens_per_s'] / causal['tokens_per_s']:.3f}")
    return lines


def write_table(out: Path, title: str, rows: list[dict]) -> str:
    text = "\n".join([title, "", TABLE_HEADER, *map(table_line, rows), "", *ratio_lines(rows)]) + "\n"
    (out / "table.md").write_text(text, encoding="utf-8")
    return text


def run_all(cases: list[Case], model_for: Callable[[str], Path], data_dir: Path, settings: Settings, title: str) -> list[dict]:
    """Every case in order; each row printed and saved (rows.jsonl, table.md) as soon as its case ends."""
    settings.out.mkdir(parents=True, exist_ok=True)
    print(title, "", TABLE_HEADER, sep="\n", flush=True)
    rows = []
    for case in cases:
        row = run_case(case, model_for(case.model), data_dir, settings)
        rows.append(row)
        with open(settings.out / "rows.jsonl", "a", encoding="utf-8") as sink:
            sink.write(json.dumps(row) + "\n")
        print(table_line(row), flush=True)
        write_table(settings.out, title, rows)
    print("", *ratio_lines(rows), sep="\n", flush=True)
    return rows


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="logs/<case>/*.log, rows.jsonl and table.md go here")
    parser.add_argument("--work_dir", default=None, help="models, data and checkpoints (default: OUT/work)")
    parser.add_argument("--parts", nargs="+", default=["plugins", "mfu"], choices=["plugins", "mfu"])
    parser.add_argument("--plugins", nargs="+", default=list(PLUGINS), choices=PLUGINS)
    parser.add_argument("--precisions", nargs="+", default=["bf16", "fp16"], choices=["bf16", "fp16"])
    parser.add_argument("--mfu_plugins", nargs="+", default=["zero2", "gemini"], choices=PLUGINS)
    parser.add_argument("--attentions", nargs="+", default=["causal", "doc_causal"], choices=["causal", "doc_causal"])
    parser.add_argument("--steps", type=int, default=3, help="plugin checks: save at step S, resume, finish at 2S")
    parser.add_argument("--mfu_steps", type=int, default=10, help="steps of each MFU launch")
    parser.add_argument("--warmup_steps", type=int, default=2, help="MFU launches: steps left out of the timing")
    parser.add_argument("--seq_length", type=int, default=2048)
    parser.add_argument("--batch_size", type=int, default=8, help="plugin checks, per GPU per micro-batch")
    parser.add_argument("--mfu_batch_size", type=int, default=8)
    parser.add_argument("--accumulation_steps", type=int, default=2, help="plugin checks (MFU runs use 1)")
    parser.add_argument("--smollm2", default=str(SMOLLM2), help="SmolLM2 Hugging Face folder (real weights)")
    parser.add_argument("--smollm2_config", default=None,
                        help="instead: a folder with SmolLM2's config and tokenizer; a random-weight model is built from it")
    parser.add_argument("--timeout", type=int, default=300, help="seconds per launch")
    parser.add_argument("--budget_s", type=int, default=0, help="stop starting launches after this many seconds (0: none)")
    parser.add_argument("--keep_checkpoints", action="store_true", help="keep each case's save_dir under --work_dir")
    parser.add_argument("--dry_run", action="store_true", help="print every planned launch and exit")
    return parser.parse_args(argv)


def main(argv: Optional[list[str]] = None) -> int:
    args = parse_args(argv)
    # `timeout` (device_entry.sh) sends SIGTERM: exit through run_launch's cleanup, which ends the launch's workers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    started = time.time()
    deadline = started + args.budget_s if args.budget_s else float("inf")
    out = Path(args.out).resolve()
    work = Path(args.work_dir).resolve() if args.work_dir else out / "work"
    cases = plan_cases(args.parts, args.plugins, args.precisions, args.mfu_plugins, args.attentions,
                       args.accumulation_steps, args.batch_size, args.mfu_batch_size)
    import torch

    gpus = max(1, torch.cuda.device_count())
    if args.dry_run:
        for case in cases:
            max_steps = 2 * args.steps if case.resume else args.mfu_steps
            common = train_argv(case, Path(f"<{case.model}>"), work / f"data-{args.seq_length}", work / "checkpoints" / case.name,
                                out / "logs" / case.name / "steps.jsonl", max_steps, gpus, flash=False)
            for launch_name, launch_argv in launches(case, common, args.steps):
                print(case.name, launch_name, " ".join(torchrun_command(launch_argv, gpus)))
        return 0
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here; run it on a CUDA machine (CPU runs only --plugin ddp: see "
              "benchmarks/bench_training.py)", file=sys.stderr)
        return 2
    import importlib.util

    import colossalai
    import transformers

    from gpu_models import one_b_model, packed_dataset, random_model_from_config

    flash = importlib.util.find_spec("flash_attn") is not None
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    if args.smollm2_config:
        smollm2 = random_model_from_config(Path(args.smollm2_config), work / "smollm2-random")
    else:
        smollm2 = Path(args.smollm2)
    data = packed_dataset(work / f"data-{args.seq_length}", smollm2, args.seq_length)
    title = (f"# GPU check: {gpus} x {torch.cuda.get_device_name()}, torch {torch.__version__}, colossalai "
             f"{colossalai.__version__}, transformers {transformers.__version__}, sequence {args.seq_length}, "
             f"attention {'flash-attn' if flash else 'SDPA'}, S = {args.steps}, "
             f"{'random-weight' if args.smollm2_config else 'pretrained'} SmolLM2, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    settings = Settings(work, out, args.steps, args.mfu_steps, args.warmup_steps, gpus, flash, args.timeout, deadline,
                        args.keep_checkpoints)
    models = {"smollm2": smollm2}
    def model_for(name: str) -> Path:  # the 1.1B model is built only when its first case comes
        if name not in models:
            models[name] = one_b_model(work / "llama-1.1b", smollm2)
        return models[name]

    rows = run_all(cases, model_for, data, settings, title)
    print(f"total {time.time() - started:.0f} s", flush=True)
    return 0 if all(r["status"] == "ok" for r in rows) else 1

if __name__ == "__main__":
    sys.exit(main())
