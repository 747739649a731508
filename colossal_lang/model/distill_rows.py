"""Learned rows for new tokens: fit each row so the frozen model reads and predicts the token like its pieces.

Token distillation (the method of AweDist, Dobler et al. 2025, implemented from its description): the
base model, frozen, is its own teacher. For every new token t spelled by old pieces p1..pk, contexts are
taken from the user's target-language text where p1..pk occur in a row under the old tokenization. In
each context the teacher reads `prefix p1..pk following`; the student reads `prefix t following`, where
only t's row is free. Everything else is the same model, and the prefix is identical in both, so the
teacher's key/value cache of the prefix serves the student too, and a step costs only the student's
1 + `following_tokens` positions.

- Input side: the student's last hidden states (after the final norm: what the head reads) at t and at
  the following tokens are pulled to the teacher's at pk and at the same following tokens
  (mean squared error relative to the teacher states' mean square).
- Output side (`output_weight`, off by default): at the end of the prefix the hidden state h is the same
  for both, so t's logit h . w can be set to log p_teacher(p1..pk | prefix) + log Z_old(h), the
  probability the teacher gives the whole spelling (squared error in nats), with a cap that is a true
  bound: p(p1..pk) <= p(p1), so at every other context in the batch and at each `reference_texts`
  position t's logit is pushed below its first piece's logit. Measured on SmolLM2 + 13k Czech tokens
  (benchmarks/results_model_init.md), fitting it made held-out Czech worse, not better, so head rows of
  untied models keep mean_of_pieces unless it is asked for.
- Tied models have one row per token, and a row fitted to the input side alone reads well but predicts
  badly (measured: worse than mean_of_pieces once 2,000 tokens are fitted). So the tied row also carries
  `keep_logits_weight` x the mean squared change of t's logit, against its mean_of_pieces row, at every
  context of the batch and every reference position: the row may move only where the head barely sees it.
  Untied models fit the input row with the input loss and, when `output_weight` > 0, the head row with
  the output losses, in the same steps.

Rows start where `mean_of_pieces` put them and take `steps` Adam steps, `batch_tokens` tokens at a time.
Tokens without a context in the text keep their start row; `max_tokens` keeps only the most frequent.
The function changes only the rows of `new_token_ids` (old rows are never written).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Iterable, Iterator, List, Optional, Sequence

import torch
from tqdm.auto import tqdm

from colossal_lang.errors import InputError
from colossal_lang.model.new_token_rows import token_alphabet


@dataclass
class DistillSettings:
    """How many contexts, how long, how many steps: the knobs that set cost and quality."""

    steps: int = 8
    """Adam steps per batch of tokens (every row gets the same budget)."""
    lr: float = 0.01
    contexts_per_token: int = 2
    prefix_tokens: int = 8
    """Old tokens before the spelling (documents are joined with eos, as in packed pretraining)."""
    following_tokens: int = 2
    """Positions after the new token whose hidden states must stay as they were."""
    batch_tokens: int = 128
    max_tokens: Optional[int] = None
    """Distil only the most frequent new tokens in the text; the rest keep mean_of_pieces (None: all)."""
    max_corpus_tokens: int = 1_000_000
    """Old-tokenizer tokens read from the text (documents in order), which bounds memory and search time."""
    output_weight: float = 0.0
    """Weight of the output loss (nats squared) against the input loss (relative squared error); 0: not fitted."""
    keep_logits_weight: float = 0.05
    """Tied models: weight of the change of the row's logits (nats squared) at the batch's and reference positions."""
    reference_positions: int = 256


@dataclass
class DistillReport:
    new_tokens: int
    distilled: int
    without_context: int
    over_budget: int
    contexts: int
    corpus_tokens: int
    reference_positions: int
    seconds: float
    input_error_before: float = math.nan
    input_error_after: float = math.nan
    output_error_before: float = math.nan  # root mean squared logit error, nats
    output_error_after: float = math.nan
    tied: bool = True
    settings: DistillSettings = field(default_factory=DistillSettings)


def iter_texts(inputs: Sequence) -> Iterator[str]:
    """Documents of jsonl files/folders (`target` field) and .txt files (one per non-empty line), in order."""
    from colossal_lang.io.jsonl import read_text_lines
    from colossal_lang.tokenizer.corpus import read_texts

    for item in inputs:
        path = Path(item)
        if not path.exists():
            raise InputError("distillation text not found", path)
        if path.is_file() and path.suffix == ".txt":
            yield from (line for _, line in read_text_lines(path) if line.strip())
        else:
            yield from (text for text in read_texts([path]) if text.strip())


def token_stream(tokenizer, texts: Iterable[str], max_tokens: int) -> torch.Tensor:
    """Old-tokenizer ids of the texts joined by eos (each document starts after one), cut at `max_tokens`."""
    separator = tokenizer.eos_token_id if tokenizer.eos_token_id is not None else tokenizer.bos_token_id
    ids: List[int] = []
    batch: List[str] = []

    def flush() -> None:
        for encoded in tokenizer(batch, add_special_tokens=False)["input_ids"]:
            ids.append(separator)
            ids.extend(encoded)
        batch.clear()

    for text in texts:
        batch.append(text)
        if len(batch) == 256:
            flush()
            if len(ids) >= max_tokens:
                break
    if batch and len(ids) < max_tokens:
        flush()
    return torch.tensor(ids[:max_tokens], dtype=torch.long)


def spellings_of(source_tokenizer, target_tokenizer, new_token_ids: torch.Tensor) -> List[List[int]]:
    """Each new token as the exact old-piece sequence it replaces (no pieces left out, unlike mean_of_pieces)."""
    tokens = target_tokenizer.convert_ids_to_tokens(new_token_ids.tolist())
    added = target_tokenizer.added_tokens_decoder
    same_alphabet = token_alphabet(source_tokenizer) is not None and token_alphabet(source_tokenizer) == token_alphabet(target_tokenizer)
    model = source_tokenizer.backend_tokenizer.model
    spellings = []
    for token_id, token in zip(new_token_ids.tolist(), tokens):
        if token_id not in added and same_alphabet:
            spellings.append([piece.id for piece in model.tokenize(token)])
        else:
            text = added[token_id].content if token_id in added else target_tokenizer.convert_tokens_to_string([token])
            spellings.append(source_tokenizer(text, add_special_tokens=False)["input_ids"])
    return spellings


def find_contexts(stream: torch.Tensor, spellings: List[List[int]], settings: DistillSettings):
    """(occurrence counts, start positions of up to `contexts_per_token` usable occurrences) per token.

    A usable occurrence has `prefix_tokens` before it and `following_tokens` after it in the stream.
    """
    by_spelling: Dict[tuple, List[int]] = defaultdict(list)
    for index, spelling in enumerate(spellings):
        if spelling:
            by_spelling[tuple(spelling)].append(index)
    lengths = sorted({len(key) for key in by_spelling})
    ids = stream.tolist()
    counts = [0] * len(spellings)
    starts: List[List[int]] = [[] for _ in spellings]
    for position in range(len(ids)):
        for length in lengths:
            for index in by_spelling.get(tuple(ids[position : position + length]), ()):
                counts[index] += 1
                usable = position >= settings.prefix_tokens and position + length + settings.following_tokens <= len(ids)
                if usable and len(starts[index]) < settings.contexts_per_token:
                    starts[index].append(position)
    return counts, starts


def reference_states(model, tokenizer, texts: Iterable[str], positions: int, chunk: int = 128) -> torch.Tensor:
    """Final hidden states of the base model at the first `positions` positions of the old-language text."""
    stream = token_stream(tokenizer, texts, positions)
    states = []
    with torch.no_grad():
        for start in range(0, len(stream), chunk):
            states.append(model.base_model(stream[start : start + chunk].unsqueeze(0)).last_hidden_state[0].float())
    return torch.cat(states) if states else torch.empty(0, model.config.hidden_size)


@dataclass
class TeacherBatch:
    """What the frozen model says about one batch of contexts (rows); `token_of_row` indexes the batch's tokens."""

    token_of_row: torch.Tensor
    prefix_cache: list  # per layer (keys, values) of the prefix, batch = rows
    following_ids: torch.Tensor  # (rows, following_tokens)
    target_states: torch.Tensor  # (rows, 1 + following, hidden): at the last piece and the following tokens
    prefix_state: torch.Tensor  # (rows, hidden): last prefix position, where the new token is predicted
    target_logit: torch.Tensor  # (rows,): log p(spelling | prefix) + log Z_old


def log_partition(states: torch.Tensor, head: torch.Tensor, chunk: int = 256) -> torch.Tensor:
    """log sum exp of the old vocabulary's logits, in chunks of rows so no (rows x vocabulary) matrix is whole."""
    return torch.cat([torch.logsumexp(part @ head.T, dim=-1) for part in states.split(chunk)])


def log_probs_of(states: torch.Tensor, next_ids: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    return (states * head[next_ids]).sum(1) - log_partition(states, head)


def teach(model, old_head: torch.Tensor, stream, spellings, starts, settings, pad_id: int) -> TeacherBatch:
    """Run the base model once over `prefix spelling following` for every context of the batch."""
    from transformers import DynamicCache

    rows = [(token, start) for token, token_starts in enumerate(starts) for start in token_starts]
    token_of_row = torch.tensor([token for token, _ in rows])
    lengths = torch.tensor([len(spellings[token]) for token, _ in rows])
    width = int(lengths.max()) + settings.following_tokens
    prefix = torch.stack([stream[start - settings.prefix_tokens : start] for _, start in rows])
    continuation = torch.full((len(rows), width), pad_id, dtype=torch.long)
    for row, (token, start) in enumerate(rows):
        span = stream[start : start + len(spellings[token]) + settings.following_tokens]
        continuation[row, : len(span)] = span  # right padding: causal attention keeps it out of real positions
    with torch.no_grad():
        cache = DynamicCache()
        prefix_state = model.base_model(prefix, past_key_values=cache, use_cache=True).last_hidden_state[:, -1].float()
        prefix_cache = [(keys.clone(), values.clone()) for keys, values in zip(cache.key_cache, cache.value_cache)]
        states = model.base_model(continuation, past_key_values=cache, use_cache=True).last_hidden_state.float()
        # log p(spelling | prefix): p1 from the prefix's last state, p2..pk from the states before them.
        predicting = torch.cat([prefix_state.unsqueeze(1), states[:, : width - 1]], dim=1)
        in_spelling = torch.arange(width).unsqueeze(0) < lengths.unsqueeze(1)
        piece_log_probs = log_probs_of(predicting[in_spelling], continuation[in_spelling], old_head)
        log_p_spelling = torch.zeros(len(rows)).index_add_(0, in_spelling.nonzero()[:, 0], piece_log_probs)
        log_z = log_partition(prefix_state, old_head)
        offsets = (lengths - 1).unsqueeze(1) + torch.arange(1 + settings.following_tokens).unsqueeze(0)
        target_states = states.gather(1, offsets.unsqueeze(2).expand(-1, -1, states.shape[2]))
        following_ids = continuation.gather(1, offsets[:, 1:])
    return TeacherBatch(token_of_row, prefix_cache, following_ids, target_states, prefix_state, log_p_spelling + log_z)


def student_states(model, input_rows: torch.Tensor, teacher: TeacherBatch, settings: DistillSettings) -> torch.Tensor:
    """Last hidden states of `prefix t following` with t's row from `input_rows`, the prefix from the cache."""
    from transformers import DynamicCache

    cache = DynamicCache.from_legacy_cache(tuple(teacher.prefix_cache))  # update() concatenates: the cache stays intact
    following = model.get_input_embeddings()(teacher.following_ids)
    embeds = torch.cat([input_rows[teacher.token_of_row].unsqueeze(1).to(following.dtype), following], dim=1)
    return model.base_model(inputs_embeds=embeds, past_key_values=cache, use_cache=True).last_hidden_state.float()


def uses_negatives(settings: DistillSettings, tied: bool) -> bool:
    """Whether a weighted loss reads the other contexts and reference positions (the cap, the logit change)."""
    return settings.output_weight > 0 or (tied and settings.keep_logits_weight > 0)


def losses(model, input_rows, head_rows, start_rows, teacher: TeacherBatch, negatives, first_piece_rows, settings):
    """(input loss, output loss, cap loss, logit change) for one batch; see the module docstring. The output loss
    is always computed (it is the report's logit error); the cap and the logit change only when they are weighted."""
    states = student_states(model, input_rows, teacher, settings)
    input_loss = ((states - teacher.target_states) ** 2).mean() / (teacher.target_states**2).mean()
    logits = (teacher.prefix_state * head_rows[teacher.token_of_row]).sum(1)
    output_loss = ((logits - teacher.target_logit) ** 2).mean()
    cap_loss = logit_change = torch.zeros(())
    if settings.output_weight > 0:
        over_cap = negatives @ head_rows.T - negatives @ first_piece_rows.T  # (positions, tokens)
        own = torch.zeros_like(over_cap, dtype=torch.bool)
        own[torch.arange(len(teacher.token_of_row)), teacher.token_of_row] = True  # its own contexts have exact targets
        cap_loss = (torch.relu(over_cap).masked_fill(own, 0.0) ** 2).mean()
    if head_rows is input_rows and settings.keep_logits_weight > 0:
        logit_change = ((negatives @ (head_rows - start_rows).T) ** 2).mean()
    return input_loss, output_loss, cap_loss, logit_change


def fit_rows(model, input_rows, head_rows, start_rows, teacher, negatives, first_piece_rows, settings, errors) -> None:
    """`settings.steps` Adam steps on the batch's rows (input rows, and head rows when they require grad; a tied
    model passes the same tensor twice); the losses before the first step and after the last go to `errors`."""
    tied = head_rows is input_rows
    trained = [input_rows] + ([head_rows] if not tied and head_rows.requires_grad else [])
    optimizer = torch.optim.Adam(trained, lr=settings.lr)
    for step in range(settings.steps + 1):
        input_loss, output_loss, cap_loss, logit_change = losses(
            model, input_rows, head_rows, start_rows, teacher, negatives, first_piece_rows, settings)
        if step == 0 or step == settings.steps:
            when = "before" if step == 0 else "after"
            errors[f"input_{when}"].append(float(input_loss) * len(teacher.token_of_row))
            errors[f"output_{when}"].append(float(output_loss) * len(teacher.token_of_row))
        if step == settings.steps:
            return  # the last pass only measures
        optimizer.zero_grad()
        total = input_loss + settings.output_weight * (output_loss + cap_loss)
        if tied:
            total = total + settings.keep_logits_weight * logit_change
        total.backward()
        optimizer.step()


def distill_new_rows(
    model,
    source_tokenizer,
    target_tokenizer,
    new_token_ids: torch.Tensor,
    texts: Iterable[str],
    settings: Optional[DistillSettings] = None,
    reference_texts: Optional[Iterable[str]] = None,
    progress: bool = True,
) -> DistillReport:
    """Fit the rows of `new_token_ids` in `model` (grown, its new rows already at mean_of_pieces) in place.

    The model must be an expansion: old ids are unchanged, so rows below `len(source_tokenizer)` are the
    teacher. Returns what was distilled, what had no context, and the losses before and after.
    """
    settings = settings or DistillSettings()
    started = time.perf_counter()
    embeddings, head = model.get_input_embeddings(), model.get_output_embeddings()
    tied = head is None or head.weight is embeddings.weight
    num_old = len(source_tokenizer)
    if len(new_token_ids) and int(new_token_ids.min()) < num_old:
        raise InputError("--init distill needs an expansion: new tokens must come after the source's ids")
    requires_grad = [parameter.requires_grad for parameter in model.parameters()]
    model.eval().requires_grad_(False)
    old_head = (head if head is not None else embeddings).weight[:num_old].detach().float()

    stream = token_stream(source_tokenizer, texts, settings.max_corpus_tokens)
    spellings = spellings_of(source_tokenizer, target_tokenizer, new_token_ids)
    counts, starts = find_contexts(stream, spellings, settings)
    with_context = sorted((index for index, found in enumerate(starts) if found), key=lambda index: -counts[index])
    chosen = with_context if settings.max_tokens is None else with_context[: settings.max_tokens]
    negatives = torch.empty(0, old_head.shape[1])
    if reference_texts is not None and uses_negatives(settings, tied):
        negatives = reference_states(model, source_tokenizer, reference_texts, settings.reference_positions)
    report = DistillReport(
        new_tokens=len(new_token_ids), distilled=len(chosen), without_context=len(spellings) - len(with_context),
        over_budget=len(with_context) - len(chosen), contexts=sum(len(starts[i]) for i in chosen),
        corpus_tokens=len(stream), reference_positions=len(negatives), seconds=0.0, tied=tied, settings=settings,
    )
    pad_id = source_tokenizer.eos_token_id if source_tokenizer.eos_token_id is not None else 0
    errors = defaultdict(list)
    batches = [chosen[start : start + settings.batch_tokens] for start in range(0, len(chosen), settings.batch_tokens)]
    for batch in tqdm(batches, desc="distilling new rows", unit="batch", disable=not progress):
        ids = new_token_ids[torch.tensor(batch)]
        teacher = teach(model, old_head, stream, [spellings[i] for i in batch], [starts[i] for i in batch], settings, pad_id)
        input_rows = embeddings.weight[ids].detach().float().clone().requires_grad_(True)
        start_rows = (embeddings if tied else head).weight[ids].detach().float().clone()
        fit_head = not tied and settings.output_weight > 0
        head_rows = input_rows if tied else start_rows.clone().requires_grad_(fit_head)
        first_piece_rows = old_head[torch.tensor([spellings[i][0] for i in batch])]
        batch_negatives = torch.cat([teacher.prefix_state, negatives])
        fit_rows(model, input_rows, head_rows, start_rows, teacher, batch_negatives, first_piece_rows, settings, errors)
        with torch.no_grad():
            embeddings.weight[ids] = input_rows.detach().to(embeddings.weight.dtype)
            if fit_head:
                head.weight[ids] = head_rows.detach().to(head.weight.dtype)
    for parameter, flag in zip(model.parameters(), requires_grad):
        parameter.requires_grad_(flag)
    if report.contexts:
        report.input_error_before = sum(errors["input_before"]) / report.contexts
        report.input_error_after = sum(errors["input_after"]) / report.contexts
        report.output_error_before = math.sqrt(sum(errors["output_before"]) / report.contexts)
        report.output_error_after = math.sqrt(sum(errors["output_after"]) / report.contexts)
    report.seconds = time.perf_counter() - started
    return report
