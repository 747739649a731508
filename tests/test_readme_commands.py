"""Every command line printed in README's pipeline section runs with `--help`, and knows every flag the
README gives it (in the command line and in the prose about it), `--config` included: README drift fails here."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import List

import pytest

REPO = Path(__file__).resolve().parents[1]
SECTION = "## The pipeline, step by step"
# A command line: `python -m MODULE ...`, `python SCRIPT.py ...` or a launcher of SCRIPT.py.
COMMAND_LINE = re.compile(r"(python (-m [\w.]+|\S+\.py)|(colossalai run|torchrun) .*\S+\.py)( |$)")
FLAG = re.compile(r"(?<![\w-])--[a-zA-Z][\w-]*")


@dataclass
class Command:
    line: str  # as printed, continuation lines joined

    def help_argv(self) -> List[str]:
        """The same program, run with --help: `python -m M`/`python S.py` as is, a launcher's script directly."""
        words = shlex.split(self.line)
        if words[:2] == ["python", "-m"]:
            return [sys.executable, "-m", words[2], "--help"]
        script = next(word for word in words if word.endswith(".py"))
        return [sys.executable, script, "--help"]

    def flags(self) -> List[str]:
        """Flags after the program (a launcher's own, such as --nproc_per_node, are not the program's)."""
        words = shlex.split(self.line)
        start = 3 if words[:2] == ["python", "-m"] else next(i for i, w in enumerate(words) if w.endswith(".py")) + 1
        return [word for word in words[start:] if FLAG.fullmatch(word)]


@dataclass
class Block:
    """The commands of one code block (or one inline span), and the flags the prose after it names for them."""
    commands: List[Command]
    prose_flags: List[str] = field(default_factory=list)


def pipeline_section() -> str:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    return text[start:end if end != -1 else None]


def readme_blocks() -> List[Block]:
    """Code blocks and inline `python ...` spans of the section; a code block's prose runs up to the next
    block or step heading (`**N.`)."""
    blocks: List[Block] = []
    for index, part in enumerate(pipeline_section().split("```")):
        if index % 2:  # inside a code block
            joined = re.sub(r"\\\n\s*", " ", part)
            blocks.append(Block([Command(line.strip()) for line in joined.splitlines()
                                 if COMMAND_LINE.match(line.strip())]))
            continue
        for paragraph_index, paragraph in enumerate(re.split(r"\n(?=\*\*\d)", part)):
            spans = re.findall(r"`([^`]+)`", paragraph)
            if paragraph_index == 0 and index > 0:
                blocks[-1].prose_flags = [flag for span in spans if not COMMAND_LINE.match(span)
                                          for flag in FLAG.findall(span)]
            blocks += [Block([Command(span)]) for span in spans if COMMAND_LINE.match(span)]
    return blocks


BLOCKS = readme_blocks()
COMMANDS = [command for block in BLOCKS for command in block.commands]


def test_the_readme_section_lists_the_whole_pipeline():
    programs = {" ".join(command.help_argv()[1:-1]) for command in COMMANDS}
    assert {"-m colossal_lang.tokenizer.train_tokenizer", "-m colossal_lang.tokenizer.init_tokenizer",
            "-m colossal_lang.tokenizer.report", "-m colossal_lang.model.init_model", "prepare_pretrain_dataset.py",
            "prepare_sft_dataset.py", "train.py", "-m colossal_lang.evaluation.perplexity",
            "-m colossal_lang.evaluation.multiple_choice", "-m colossal_lang.evaluation.compare",
            "inference_example.py"} <= programs
    assert any("--use_neft" in block.prose_flags for block in BLOCKS)  # the prose's flags are read too


@pytest.mark.slow
def test_every_readme_command_runs_with_help_and_knows_its_flags():
    # One process per command, all started at once: each pays the torch import once.
    running = [(command, subprocess.Popen(command.help_argv(), cwd=REPO, stdout=subprocess.PIPE,
                                          stderr=subprocess.PIPE, text=True)) for command in COMMANDS]
    known = {}
    problems = []
    for command, process in running:
        out, err = process.communicate(timeout=600)
        if process.returncode != 0:
            problems.append(f"{command.line}: --help exited {process.returncode}: {err.strip()[-300:]}")
        known[command.line] = set(FLAG.findall(out))
        unknown = [flag for flag in command.flags() + ["--config"] if flag not in known[command.line]]
        if unknown:
            problems.append(f"{command.line}: not in its --help: {' '.join(unknown)}")
    for block in BLOCKS:
        # Prose after a block of two commands may name a flag of either (--special_tokens_in_text: pretraining).
        either = set().union(*(known[command.line] for command in block.commands))
        unknown = [flag for flag in block.prose_flags if flag not in either]
        if unknown:
            problems.append(f"prose after `{block.commands[0].line[:60]}...`: no such flag: {' '.join(unknown)}")
    assert problems == []
