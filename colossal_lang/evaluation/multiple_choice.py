"""Multiple-choice accuracy of a causal LM: rows `{"question": str, "choices": [str, ...], "answer": int}`.

Two scorings:

* `loglik` (default, as lm-evaluation-harness): the log-likelihood of each full choice, written after
  the question with `choice_separator` (default one space), given the question. The prediction is the
  choice with the highest summed log-likelihood (`accuracy`), and separately the highest
  log-likelihood per UTF-8 byte of the choice (`accuracy_norm`, which does not favour short choices and,
  like bits per byte, does not depend on the tokenizer), and a third time after subtracting each
  choice's log-likelihood without the question (`accuracy_calibrated`, pointwise mutual information as
  lm-evaluation-harness's acc_mutual_info): this removes how likely the choice text is on its own,
  which otherwise swamps what the question tells a weak model (`calibrate=False` skips it).
* `letter` (MMLU style): the question, the choices as "A. ...", "B. ..." and "Answer:", scored by the
  logits of the answer letters (" A", " B", ...) at the next position.

Both can be prefixed by k solved examples (`fewshot_items`), separated by blank lines. Documents start
with the same context token as in bits per byte (`document_prefix_ids`). Accuracy comes with its
binomial standard error sqrt(acc * (1 - acc) / n).
"""

from __future__ import annotations

import argparse
import json
import math
import string
from dataclasses import asdict, dataclass, field
from typing import List, Optional, Sequence

import torch

from colossal_lang.cli import str2bool
from colossal_lang.errors import InputError, run_cli
from colossal_lang.evaluation.perplexity import document_prefix_ids, sequence_nlls

METHODS = ("loglik", "letter")
LETTERS = string.ascii_uppercase


@dataclass
class MultipleChoiceItem:
    question: str
    choices: List[str]
    answer: int
    line: Optional[int] = None


@dataclass
class MultipleChoiceResult:
    method: str
    num_questions: int
    num_fewshot: int
    accuracy: float
    accuracy_stderr: float
    accuracy_norm: Optional[float]  # loglik only: choice log-likelihood per UTF-8 byte
    accuracy_norm_stderr: Optional[float]
    accuracy_calibrated: Optional[float]  # loglik only: log p(choice | question) - log p(choice)
    accuracy_calibrated_stderr: Optional[float]
    chance: float  # mean of 1 / number of choices
    predictions: List[int] = field(repr=False)
    predictions_norm: Optional[List[int]] = field(repr=False, default=None)
    predictions_calibrated: Optional[List[int]] = field(repr=False, default=None)
    choice_scores: List[List[float]] = field(repr=False, default_factory=list)  # summed log-likelihoods or letter log-probs

    def as_dict(self, with_predictions: bool = False) -> dict:
        values = asdict(self)
        if not with_predictions:
            for key in ("predictions", "predictions_norm", "predictions_calibrated", "choice_scores"):
                values.pop(key)
        return values


def validate_row(record: dict, path, line: int) -> MultipleChoiceItem:
    """One jsonl record as a MultipleChoiceItem, or InputError naming the file, the line and the problem."""
    question, choices, answer = record.get("question"), record.get("choices"), record.get("answer")
    if not isinstance(question, str) or not question.strip():
        raise InputError("'question' must be a non-empty string", path, line)
    if not isinstance(choices, list) or len(choices) < 2:
        raise InputError("'choices' must be a list of at least 2 strings", path, line)
    if not all(isinstance(choice, str) and choice.strip() for choice in choices):
        raise InputError("every choice must be a non-empty string", path, line)
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise InputError(f"'answer' must be an integer index in 0..{len(choices) - 1}, got {answer!r}", path, line)
    return MultipleChoiceItem(question, list(choices), answer, line)


def read_multiple_choice(path, max_questions: Optional[int] = None) -> List[MultipleChoiceItem]:
    """The validated rows of a multiple-choice jsonl file (the first `max_questions` when given)."""
    from colossal_lang.io.jsonl import iter_jsonl

    items = []
    for line, record in iter_jsonl(path):
        if max_questions is not None and len(items) >= max_questions:
            break
        items.append(validate_row(record, path, line))
    if not items:
        raise InputError("no multiple-choice rows", path)
    return items


def letter_prompt(item: MultipleChoiceItem) -> str:
    listed = "".join(f"{LETTERS[index]}. {choice}\n" for index, choice in enumerate(item.choices))
    return f"{item.question}\n{listed}Answer:"


def fewshot_prefix(fewshot_items: Sequence[MultipleChoiceItem], method: str, choice_separator: str) -> str:
    if method == "letter":
        blocks = [f"{letter_prompt(item)} {LETTERS[item.answer]}" for item in fewshot_items]
    else:
        blocks = [f"{item.question}{choice_separator}{item.choices[item.answer]}" for item in fewshot_items]
    return "".join(block + "\n\n" for block in blocks)


def _standard_error(accuracy: float, count: int) -> float:
    return math.sqrt(accuracy * (1 - accuracy) / count)


def _argmax(values: Sequence[float]) -> int:
    return max(range(len(values)), key=lambda index: values[index])


def _loglik_scores(model, tokenizer, items, prefix: str, choice_separator: str, batch_size: int, progress: bool,
                   calibrate: bool):
    """Summed log-likelihood of each choice given the question, and (calibrate) given only the document start."""
    start = document_prefix_ids(tokenizer)
    sequences, owners = [], []
    unconditional = {}  # choice text -> index in `sequences`: a distractor often recurs across questions
    for item_index, item in enumerate(items):
        # Context and choice are tokenized apart (as lm-eval does): every choice is scored on the same
        # context tokens, whatever the tokenizer would merge across the boundary.
        context_ids = start + tokenizer(prefix + item.question, add_special_tokens=False)["input_ids"]
        for choice in item.choices:
            choice_ids = tokenizer(choice_separator + choice, add_special_tokens=False)["input_ids"]
            sequences.append((context_ids + choice_ids, len(context_ids)))
            owners.append(item_index)
            if calibrate and choice not in unconditional:
                unconditional[choice] = len(sequences)
                sequences.append((start + choice_ids, len(start)))
                owners.append(None)
    nlls = sequence_nlls(model, sequences, batch_size, progress, desc="choices")
    sums = [[] for _ in items]
    for owner, nll in zip(owners, nlls):
        if owner is not None:
            sums[owner].append(-nll)
    priors = None
    if calibrate:
        priors = [[-nlls[unconditional[choice]] for choice in item.choices] for item in items]
    return sums, priors


def letter_token_ids(tokenizer, count: int) -> List[int]:
    """The first token of " A", " B", ...: what a model writes after "Answer:"."""
    ids = [tokenizer(" " + LETTERS[index], add_special_tokens=False)["input_ids"][0] for index in range(count)]
    if len(set(ids)) != count:
        raise ValueError("the answer letters do not start with distinct tokens in this tokenizer")
    return ids


@torch.inference_mode()
def _letter_scores(model, tokenizer, items, prefix: str, batch_size: int, progress: bool):
    from tqdm.auto import tqdm

    device = next(model.parameters()).device
    start = document_prefix_ids(tokenizer)
    scores = []
    for batch_start in tqdm(range(0, len(items), batch_size), desc="questions", disable=not progress, leave=False):
        batch = items[batch_start : batch_start + batch_size]
        prompts = [start + tokenizer(prefix + letter_prompt(item), add_special_tokens=False)["input_ids"] for item in batch]
        longest = max(len(ids) for ids in prompts)
        # Left padding puts every prompt's last token in the last column, so only that column's logits
        # are computed (a vocabulary-wide row per prompt instead of one per token); positions are given
        # explicitly so that padding does not shift them.
        input_ids = torch.zeros((len(batch), longest), dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, ids in enumerate(prompts):
            input_ids[row, longest - len(ids):] = torch.tensor(ids)
            attention_mask[row, longest - len(ids):] = 1
        position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
        logits = model(input_ids=input_ids.to(device), attention_mask=attention_mask.to(device),
                       position_ids=position_ids.to(device), logits_to_keep=1).logits[:, -1]
        for row, (item, ids) in enumerate(zip(batch, prompts)):
            log_probs = torch.log_softmax(logits[row].float(), dim=-1)
            letters = letter_token_ids(tokenizer, len(item.choices))
            scores.append([log_probs[token].item() for token in letters])
    return scores


def evaluate_multiple_choice(
    model,
    tokenizer,
    items: Sequence[MultipleChoiceItem],
    method: str = "loglik",
    fewshot_items: Sequence[MultipleChoiceItem] = (),
    choice_separator: str = " ",
    batch_size: int = 8,
    progress: bool = True,
    calibrate: bool = True,
) -> MultipleChoiceResult:
    """Accuracy of `model` on `items` (see the module docstring for the two methods)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}")
    items = list(items)
    if not items:
        raise ValueError("no questions to evaluate")
    if method == "letter" and max(len(item.choices) for item in items + list(fewshot_items)) > len(LETTERS):
        raise ValueError(f"letter scoring supports at most {len(LETTERS)} choices")
    prefix = fewshot_prefix(fewshot_items, method, choice_separator)
    priors = None
    if method == "letter":
        scores = _letter_scores(model, tokenizer, items, prefix, batch_size, progress)
    else:
        scores, priors = _loglik_scores(model, tokenizer, items, prefix, choice_separator, batch_size, progress,
                                        calibrate)
    answers = [item.answer for item in items]
    predictions, accuracy, stderr = _accuracy(scores, answers)
    norm = calibrated = (None, None, None)
    if method == "loglik":
        per_byte = [[score / max(1, len(choice.encode("utf-8"))) for score, choice in zip(row, item.choices)]
                    for row, item in zip(scores, items)]
        norm = _accuracy(per_byte, answers)
    if priors is not None:
        calibrated = _accuracy([[s - p for s, p in zip(row, prior)] for row, prior in zip(scores, priors)], answers)
    return MultipleChoiceResult(
        method=method, num_questions=len(items), num_fewshot=len(fewshot_items),
        accuracy=accuracy, accuracy_stderr=stderr,
        accuracy_norm=norm[1], accuracy_norm_stderr=norm[2],
        accuracy_calibrated=calibrated[1], accuracy_calibrated_stderr=calibrated[2],
        chance=sum(1 / len(item.choices) for item in items) / len(items),
        predictions=predictions, predictions_norm=norm[0], predictions_calibrated=calibrated[0], choice_scores=scores,
    )


def _accuracy(scores: List[List[float]], answers: List[int]):
    """(predictions, accuracy, binomial standard error) of picking the highest score per question."""
    predictions = [_argmax(row) for row in scores]
    accuracy = sum(p == a for p, a in zip(predictions, answers)) / len(answers)
    return predictions, accuracy, _standard_error(accuracy, len(answers))


def format_result(name: str, result: MultipleChoiceResult) -> str:
    text = (f"{name}: {result.method}, {result.num_questions} questions, {result.num_fewshot}-shot: "
            f"accuracy {result.accuracy:.4f} ± {result.accuracy_stderr:.4f}")
    if result.accuracy_norm is not None:
        text += f", per-byte normalised {result.accuracy_norm:.4f} ± {result.accuracy_norm_stderr:.4f}"
    if result.accuracy_calibrated is not None:
        text += f", calibrated {result.accuracy_calibrated:.4f} ± {result.accuracy_calibrated_stderr:.4f}"
    return text + f" (chance {result.chance:.4f})"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m colossal_lang.evaluation.multiple_choice",
                                     description="Multiple-choice accuracy of a causal LM on jsonl question files.")
    parser.add_argument("--model_path", required=True, help="Hugging Face model folder")
    parser.add_argument("--tokenizer_path", default=None, help="tokenizer folder (default: the model's)")
    parser.add_argument("--data", nargs="+", required=True, help="jsonl files of {question, choices, answer}")
    parser.add_argument("--method", choices=METHODS, default="loglik",
                        help="loglik: likelihood of each full choice; letter: logits of the answer letter (MMLU style)")
    parser.add_argument("--fewshot_file", default=None, help="jsonl of solved examples put before each question")
    parser.add_argument("--num_fewshot", type=int, default=None,
                        help="how many examples (default: 5 with --fewshot_file, else 0)")
    parser.add_argument("--choice_separator", default=" ", help="text between question and choice (loglik)")
    parser.add_argument("--calibrate", type=str2bool, default=True,
                        help="loglik: also report accuracy of log p(choice | question) - log p(choice) (default true)")
    parser.add_argument("--max_questions", type=int, default=None, help="evaluate only the first N questions of each file")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--device", default=None)
    parser.add_argument("--dtype", default="auto", help="auto, float32, bfloat16, float16")
    parser.add_argument("--output_json", nargs="?", const="-", default=None, metavar="PATH",
                        help="write results as JSON to PATH (no PATH: print JSON instead of text)")
    parser.add_argument("--no_progress", action="store_true")
    return parser


def load_fewshot(fewshot_file: Optional[str], num_fewshot: Optional[int]) -> List[MultipleChoiceItem]:
    if num_fewshot is None:
        num_fewshot = 5 if fewshot_file else 0
    if num_fewshot < 0:
        raise InputError("--num_fewshot must be >= 0")
    if num_fewshot == 0:
        return []
    if not fewshot_file:
        raise InputError("--num_fewshot > 0 needs --fewshot_file")
    examples = read_multiple_choice(fewshot_file, max_questions=num_fewshot)
    if len(examples) < num_fewshot:
        raise InputError(f"holds {len(examples)} examples, --num_fewshot asks for {num_fewshot}", fewshot_file)
    return examples


def main(argv: Optional[list] = None) -> dict:
    from pathlib import Path

    from colossal_lang.cli import parse_args_with_config, require_positive
    from colossal_lang.io.models import load_model_and_tokenizer

    args = parse_args_with_config(build_parser(), argv)
    require_positive(args, "max_questions", "batch_size")
    for path in args.data + ([args.fewshot_file] if args.fewshot_file else []):
        if not Path(path).is_file():
            raise InputError("no such file", path)
    question_sets = {path: read_multiple_choice(path, args.max_questions) for path in args.data}
    fewshot_items = load_fewshot(args.fewshot_file, args.num_fewshot)
    model, tokenizer = load_model_and_tokenizer(args.model_path, args.device, args.dtype, args.tokenizer_path)
    results = {path: evaluate_multiple_choice(model, tokenizer, items, args.method, fewshot_items, args.choice_separator,
                                              args.batch_size, progress=not args.no_progress, calibrate=args.calibrate)
               for path, items in question_sets.items()}
    report = {"model_path": str(args.model_path), "files": {path: r.as_dict() for path, r in results.items()}}
    if args.output_json == "-":
        print(json.dumps(report, indent=2, ensure_ascii=False))
    else:
        for path, result in results.items():
            print(format_result(path, result))
        if args.output_json:
            Path(args.output_json).write_text(json.dumps(report, indent=2, ensure_ascii=False), encoding="utf-8")
    return report


if __name__ == "__main__":
    run_cli(main)
