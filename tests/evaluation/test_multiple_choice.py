"""Multiple choice: hand-computed scores, gold picked when the model prefers it, padding-safe batching, errors."""

from __future__ import annotations

import json
import math

import pytest

from colossal_lang.errors import InputError
from colossal_lang.evaluation.multiple_choice import (
    MultipleChoiceItem,
    evaluate_multiple_choice,
    letter_token_ids,
    main,
    read_multiple_choice,
)

CHOICES = ["no", "yes", "maybe", "perhaps"]  # each a single token after the separating space


def test_uniform_model_scores_are_token_counts_times_log_vocab(uniform_model, smollm2_tokenizer):
    items = [MultipleChoiceItem("Hlavní město Česka je", ["Praha", "Brno a okolí", "Ostrava"], 0),
             MultipleChoiceItem("Kolik je dva a dva?", ["čtyři", "pět"], 1)]
    result = evaluate_multiple_choice(uniform_model, smollm2_tokenizer, items, progress=False)
    log_vocab = math.log(len(smollm2_tokenizer))
    fewest_tokens = []
    for item, scores in zip(items, result.choice_scores):
        counts = [len(smollm2_tokenizer(" " + c, add_special_tokens=False)["input_ids"]) for c in item.choices]
        assert scores == pytest.approx([-count * log_vocab for count in counts], rel=1e-5)
        fewest_tokens.append(counts.index(min(counts)))
    # Summed scores favour the choice with fewest tokens (the first of a tie).
    assert result.predictions == fewest_tokens
    accuracy = sum(p == item.answer for p, item in zip(fewest_tokens, items)) / 2
    assert result.accuracy == accuracy
    assert result.accuracy_stderr == pytest.approx(math.sqrt(accuracy * (1 - accuracy) / 2))
    assert result.chance == pytest.approx((1 / 3 + 1 / 2) / 2)


def test_calibrated_scores_subtract_the_choice_alone(tiny_model, smollm2_tokenizer):
    import torch

    items = [MultipleChoiceItem("English: Open file\nCzech:", ["Otevřít soubor", "Zavřít okno", "Uložit"], 0),
             MultipleChoiceItem("English: Save\nCzech:", ["Uložit", "Tisk"], 0)]
    result = evaluate_multiple_choice(tiny_model, smollm2_tokenizer, items, progress=False)
    eos = smollm2_tokenizer.eos_token_id
    for item, scores, predicted in zip(items, result.choice_scores, result.predictions_calibrated):
        calibrated = []
        for choice, score in zip(item.choices, scores):
            ids = [eos] + smollm2_tokenizer(" " + choice, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                log_probs = torch.log_softmax(tiny_model(torch.tensor([ids])).logits[0, :-1].float(), -1)
            prior = log_probs.gather(1, torch.tensor(ids[1:])[:, None]).sum().item()
            calibrated.append(score - prior)
        assert predicted == calibrated.index(max(calibrated))
    assert result.accuracy_calibrated == sum(p == 0 for p in result.predictions_calibrated) / 2
    skipped = evaluate_multiple_choice(tiny_model, smollm2_tokenizer, items, calibrate=False, progress=False)
    assert skipped.accuracy_calibrated is None
    for skipped_row, row in zip(skipped.choice_scores, result.choice_scores):
        assert skipped_row == pytest.approx(row, abs=1e-4)


@pytest.mark.parametrize("gold", range(4))
def test_both_scorings_pick_the_gold_answer_the_model_prefers(smollm2_tokenizer, preferring_model, gold):
    choices = CHOICES[:]
    choices[gold], choices[1] = choices[1], choices[gold]  # "yes" sits at the gold position
    item = MultipleChoiceItem("Is the sky blue on a clear day?", choices, gold)
    yes_id = smollm2_tokenizer(" yes", add_special_tokens=False)["input_ids"]
    assert len(yes_id) == 1
    gold_letter = letter_token_ids(smollm2_tokenizer, 4)[gold]
    model = preferring_model([yes_id[0], gold_letter])
    loglik = evaluate_multiple_choice(model, smollm2_tokenizer, [item], method="loglik", progress=False)
    letter = evaluate_multiple_choice(model, smollm2_tokenizer, [item], method="letter", progress=False)
    assert loglik.predictions == loglik.predictions_norm == letter.predictions == [gold]
    assert loglik.accuracy == loglik.accuracy_norm == letter.accuracy == 1.0
    assert letter.accuracy_norm is None


def test_a_model_preferring_a_wrong_answer_misses_the_gold(smollm2_tokenizer, preferring_model):
    # Control for the test above: prefer only "no" (index 0) while the gold is "yes" (index 1).
    no_id = smollm2_tokenizer(" no", add_special_tokens=False)["input_ids"][0]
    model = preferring_model([no_id, letter_token_ids(smollm2_tokenizer, 4)[0]])
    item = MultipleChoiceItem("Is the sky blue on a clear day?", CHOICES, 1)
    for method in ("loglik", "letter"):
        assert evaluate_multiple_choice(model, smollm2_tokenizer, [item], method=method, progress=False).accuracy == 0.0


def test_batched_scores_equal_one_at_a_time(sliced_smollm2_dir, data_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(sliced_smollm2_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(sliced_smollm2_dir)
    items = read_multiple_choice(data_dir / "eval" / "cs_translate_mc.jsonl", max_questions=3)
    fewshot = read_multiple_choice(data_dir / "eval" / "cs_translate_mc_fewshot.jsonl", max_questions=1)
    for method in ("loglik", "letter"):
        batched = evaluate_multiple_choice(model, tokenizer, items, method, fewshot, batch_size=8, progress=False)
        single = evaluate_multiple_choice(model, tokenizer, items, method, fewshot, batch_size=1, progress=False)
        for batched_row, single_row in zip(batched.choice_scores, single.choice_scores):
            # Summed float32 log-likelihoods of ~1000 nats agree to float32 precision, not to a fixed 2e-4.
            assert batched_row == pytest.approx(single_row, rel=1e-6, abs=2e-4)
        assert batched.num_fewshot == 1


@pytest.mark.parametrize(
    "row, problem",
    [
        ({"choices": ["a", "b"], "answer": 0}, "'question'"),
        ({"question": "q", "choices": ["only one"], "answer": 0}, "at least 2"),
        ({"question": "q", "choices": ["a", 3], "answer": 0}, "non-empty string"),
        ({"question": "q", "choices": ["a", "b"], "answer": 2}, "0..1"),
        ({"question": "q", "choices": ["a", "b"], "answer": True}, "'answer'"),
        ({"question": "q", "choices": ["a", "b"], "answer": "0"}, "'answer'"),
    ],
)
def test_malformed_rows_name_file_and_line(tmp_path, row, problem):
    path = tmp_path / "mc.jsonl"
    good = {"question": "q", "choices": ["a", "b"], "answer": 1}
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(row) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match=problem) as caught:
        read_multiple_choice(path)
    assert str(caught.value).startswith(f"{path}:3: ")


def test_cli_matches_the_function_and_checks_fewshot_flags(sliced_smollm2_dir, data_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    data = data_dir / "eval" / "cs_translate_mc.jsonl"
    output = tmp_path / "mc.json"
    main(["--model_path", str(sliced_smollm2_dir), "--data", str(data), "--max_questions", "4",
          "--no_progress", "--output_json", str(output)])
    reported = json.loads(output.read_text())["files"][str(data)]
    model = AutoModelForCausalLM.from_pretrained(sliced_smollm2_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(sliced_smollm2_dir)
    expected = evaluate_multiple_choice(model, tokenizer, read_multiple_choice(data, 4), progress=False)
    assert reported["accuracy"] == expected.accuracy and reported["accuracy_norm"] == expected.accuracy_norm
    assert reported["num_questions"] == 4
    assert f"accuracy {expected.accuracy:.4f}" in capsys.readouterr().out
    with pytest.raises(InputError, match="needs --fewshot_file"):
        main(["--model_path", str(sliced_smollm2_dir), "--data", str(data), "--num_fewshot", "2"])
    with pytest.raises(InputError, match="no such file"):
        main(["--model_path", str(sliced_smollm2_dir), "--data", str(tmp_path / "absent.jsonl")])
