"""Build the pick-the-Czech-translation multiple-choice set from the last rows of the SFT translation file.

Each question shows an English string and asks for its Czech translation among 4 choices: the true one
and 3 distractors, the Czech sides of other held-out rows closest in length (so that length alone does
not give the answer away), sampled with a fixed seed. Only the last `heldout_rows` rows of the SFT file
are used, and rows whose English or Czech side also occurs in the earlier rows are dropped, so a model
fine-tuned on the earlier rows has not seen any question or answer. Train on the first rows only
(`head -n 1300 data/sft/cs_translate.jsonl` for the default 200 held-out rows).

    python -m colossal_lang.evaluation.build_translation_mc --sft_file data/sft/cs_translate.jsonl \
        --output_dir data/eval
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import List, Optional, Tuple

from colossal_lang.errors import InputError, run_cli
from colossal_lang.io.jsonl import iter_jsonl

INSTRUCTION_PREFIX = "Přelož do češtiny:\n"
NUM_CHOICES = 4
NEAREST_BY_LENGTH = 10


def read_translation_pairs(path) -> List[Tuple[int, str, str]]:
    """(line, English, Czech) of every row `{"messages": [human "Přelož do češtiny:\\n<en>", assistant <cs>]}`."""
    pairs = []
    for line, record in iter_jsonl(path):
        messages = record.get("messages")
        if not (isinstance(messages, list) and len(messages) == 2 and all(isinstance(m, dict) for m in messages)):
            raise InputError("expected 2 messages (human, assistant)", path, line)
        prompt, reply = (message.get("content") for message in messages)
        if not (isinstance(prompt, str) and prompt.startswith(INSTRUCTION_PREFIX) and isinstance(reply, str)):
            raise InputError(f"human message must start with {INSTRUCTION_PREFIX!r}", path, line)
        pairs.append((line, prompt[len(INSTRUCTION_PREFIX):].strip(), reply.strip()))
    return pairs


def question_text(english: str) -> str:
    return f"English: {english}\nCzech:"


def build_rows(pairs, heldout_rows: int, num_fewshot: int, seed: int):
    """Split the held-out pairs into few-shot rows and question rows, each with 4 seeded choices."""
    training, heldout = pairs[:-heldout_rows], pairs[-heldout_rows:]
    seen = {text.casefold() for _, english, czech in training for text in (english, czech)}
    kept, used = [], set()
    for line, english, czech in heldout:
        keys = (english.casefold(), czech.casefold())
        # Untranslated strings (names, code) and leaks from the training rows make no fair question.
        if keys[0] == keys[1] or len(czech) < 3 or keys[0] in seen or keys[1] in seen or keys[0] in used or keys[1] in used:
            continue
        used.update(keys)
        kept.append((line, english, czech))
    # Every question takes NUM_CHOICES - 1 other rows as distractors; one must remain after the few-shot rows.
    if len(kept) < max(NUM_CHOICES, num_fewshot + 1):
        raise InputError(f"only {len(kept)} of the last {heldout_rows} rows make fair questions: too few for "
                         f"{num_fewshot} few-shot rows and {NUM_CHOICES}-choice questions (raise --heldout_rows)")
    rng = random.Random(seed)
    rows = []
    for line, english, czech in kept:
        others = [other for _, _, other in kept if other.casefold() != czech.casefold()]
        others.sort(key=lambda other: (abs(len(other) - len(czech)), other))
        distractors = rng.sample(others[:NEAREST_BY_LENGTH], NUM_CHOICES - 1)
        answer = rng.randrange(NUM_CHOICES)
        choices = distractors[:answer] + [czech] + distractors[answer:]
        rows.append({"question": question_text(english), "choices": choices, "answer": answer,
                     "category": "translation", "source_line": line})
    return rows[:num_fewshot], rows[num_fewshot:], len(heldout) - len(kept)


def write_jsonl(path: Path, rows) -> None:
    with path.open("w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")


def main(argv: Optional[list] = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m colossal_lang.evaluation.build_translation_mc",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--sft_file", default="data/sft/cs_translate.jsonl")
    parser.add_argument("--heldout_rows", type=int, default=200, help="the last N rows are held out")
    parser.add_argument("--num_fewshot", type=int, default=10, help="held-out rows kept aside as few-shot examples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--output_dir", default="data/eval")
    args = parser.parse_args(argv)
    if not Path(args.sft_file).is_file():
        raise InputError("no such file", args.sft_file)
    pairs = read_translation_pairs(args.sft_file)
    if not 0 < args.heldout_rows < len(pairs):
        raise InputError(f"--heldout_rows must be in 1..{len(pairs) - 1}")
    if args.num_fewshot < 0:
        raise InputError(f"--num_fewshot must be >= 0, got {args.num_fewshot}")
    fewshot, questions, dropped = build_rows(pairs, args.heldout_rows, args.num_fewshot, args.seed)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(output_dir / "cs_translate_mc.jsonl", questions)
    write_jsonl(output_dir / "cs_translate_mc_fewshot.jsonl", fewshot)
    summary = {"heldout_rows": args.heldout_rows, "dropped": dropped, "fewshot": len(fewshot),
               "questions": len(questions), "first_heldout_line": len(pairs) - args.heldout_rows + 1}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    run_cli(main)
