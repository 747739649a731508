"""--init distill on the real SmolLM2 cut to 2 layers, with the Czech expansion and text of tests/model/conftest.py."""

from __future__ import annotations


import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from colossal_lang.errors import InputError
from colossal_lang.model.distill_rows import DistillSettings, find_contexts, spellings_of, student_states, teach, token_stream
from colossal_lang.model.init_model import init_model, main

V_SMOLLM2 = 49152
# The 2-layer slice is a poor language model (its logits are far from the full model's): a small output weight
# keeps its huge logit errors from swamping the hidden-state loss.
SETTINGS = DistillSettings(steps=8, max_tokens=96, batch_tokens=48, max_corpus_tokens=60_000, output_weight=0.002)


def grow(source_dir, tokenizer_dir, output_dir, init, **kwargs):
    report = init_model(source_dir, tokenizer_dir, output_dir, init=init, progress=False, **kwargs)
    return report, AutoModelForCausalLM.from_pretrained(output_dir).eval()


@pytest.fixture(scope="module")
def czech_text(data_dir):
    return [str(data_dir / "pretrain" / "cs")]


@pytest.fixture(scope="module")
def grown_pair(sliced_smollm2_dir, smollm2_czech_tokenizer_dir, czech_text, data_dir, tmp_path_factory):
    """(mean_of_pieces report and model, distill report and model) for the tied 2-layer SmolLM2."""
    folder = tmp_path_factory.mktemp("distill")
    baseline = grow(sliced_smollm2_dir, smollm2_czech_tokenizer_dir, folder / "mean_of_pieces", "mean_of_pieces")
    distilled = grow(
        sliced_smollm2_dir, smollm2_czech_tokenizer_dir, folder / "distill", "distill", distill_text=czech_text,
        distill_reference_text=[str(data_dir / "pretrain" / "en")], distill_settings=SETTINGS,
    )
    return baseline, distilled


def test_old_rows_are_bit_identical_and_the_model_stays_tied(grown_pair, sliced_smollm2_dir, smollm2_tokenizer, english_heldout):
    _, (report, distilled) = grown_pair
    source = AutoModelForCausalLM.from_pretrained(sliced_smollm2_dir).eval()
    assert report.init == "distill" and report.tied
    assert distilled.lm_head.weight.data_ptr() == distilled.model.embed_tokens.weight.data_ptr()
    assert torch.equal(distilled.model.embed_tokens.weight[:V_SMOLLM2], source.model.embed_tokens.weight)
    with torch.no_grad():
        for text in english_heldout[:3]:
            ids = smollm2_tokenizer(text, return_tensors="pt").input_ids
            assert torch.equal(source(ids).logits[0], distilled(ids).logits[0, :, :V_SMOLLM2])


def test_only_distilled_rows_move_and_the_rest_keep_mean_of_pieces(grown_pair):
    (baseline_report, baseline), (report, distilled) = grown_pair
    fitted = report.distill
    assert fitted.distilled == SETTINGS.max_tokens and fitted.contexts <= 2 * fitted.distilled
    assert fitted.distilled + fitted.without_context + fitted.over_budget == fitted.new_tokens == len(report.new_token_ids)
    new_ids = report.new_token_ids
    moved = (distilled.model.embed_tokens.weight[new_ids] != baseline.model.embed_tokens.weight[new_ids]).any(dim=1)
    assert int(moved.sum()) == fitted.distilled  # every distilled row moved, every other new row is mean_of_pieces
    padding = torch.arange(report.target_vocab_size, report.new_rows)
    assert torch.equal(distilled.model.embed_tokens.weight[padding], baseline.model.embed_tokens.weight[padding])


def test_both_losses_fall_on_the_fitted_contexts(grown_pair):
    fitted = grown_pair[1][0].distill
    assert fitted.input_error_after < 0.8 * fitted.input_error_before
    assert fitted.output_error_after < 0.7 * fitted.output_error_before


def test_a_distilled_token_takes_the_probability_of_its_spelling(grown_pair, sliced_smollm2_dir, smollm2_tokenizer, smollm2_czech_tokenizer_dir, czech_text):
    """Checked with plain forward passes (no cache): at contexts of distilled tokens, log p(new token | prefix) in
    the grown model is closer to the source's log p(its pieces | prefix) than with mean_of_pieces."""
    from colossal_lang.model.distill_rows import iter_texts

    (_, baseline), (report, distilled) = grown_pair
    source = AutoModelForCausalLM.from_pretrained(sliced_smollm2_dir).eval()
    target = AutoTokenizer.from_pretrained(smollm2_czech_tokenizer_dir)
    fitted = distilled.model.embed_tokens.weight[report.new_token_ids] != baseline.model.embed_tokens.weight[report.new_token_ids]
    fitted_ids = report.new_token_ids[fitted.any(dim=1)][:24]
    spellings = spellings_of(smollm2_tokenizer, target, fitted_ids)
    stream = token_stream(smollm2_tokenizer, iter_texts(czech_text), SETTINGS.max_corpus_tokens)
    _, starts = find_contexts(stream, spellings, SETTINGS)
    gaps = {"distill": [], "mean_of_pieces": []}
    with torch.no_grad():
        for new_id, spelling, found in zip(fitted_ids.tolist(), spellings, starts):
            prefix = stream[found[0] - SETTINGS.prefix_tokens : found[0]]
            teacher = torch.log_softmax(source(torch.cat([prefix, torch.tensor(spelling)]).unsqueeze(0)).logits[0].float(), -1)
            log_p_spelling = sum(float(teacher[len(prefix) - 1 + j, piece]) for j, piece in enumerate(spelling))
            for name, model in (("distill", distilled), ("mean_of_pieces", baseline)):
                log_p_new = float(torch.log_softmax(model(prefix.unsqueeze(0)).logits[0, -1].float(), -1)[new_id])
                gaps[name].append(abs(log_p_new - log_p_spelling))
    assert len(gaps["distill"]) == 24
    assert sum(gaps["distill"]) < 0.7 * sum(gaps["mean_of_pieces"])


def test_teacher_and_student_agree_when_the_row_is_the_spelling_itself(sliced_smollm2_dir, smollm2_tokenizer, czech_text):
    """A one-piece 'new token' whose row is that piece's row: the cached student must reproduce the teacher,
    and the teacher's targets must equal a plain uncached forward pass."""
    from colossal_lang.model.distill_rows import iter_texts

    model = AutoModelForCausalLM.from_pretrained(sliced_smollm2_dir).eval().requires_grad_(False)
    settings = DistillSettings(prefix_tokens=6, following_tokens=2, contexts_per_token=2)
    stream = token_stream(smollm2_tokenizer, iter_texts(czech_text), 5000)
    spellings = [smollm2_tokenizer(" je", add_special_tokens=False)["input_ids"], smollm2_tokenizer(" proto", add_special_tokens=False)["input_ids"]]
    assert len(spellings[0]) == 1 and len(spellings[1]) >= 1
    counts, starts = find_contexts(stream, spellings, settings)
    assert all(len(found) == 2 for found in starts) and all(count >= 2 for count in counts)
    head = model.lm_head.weight.float()
    teacher = teach(model, head, stream, spellings, starts, settings, pad_id=0)

    start = starts[1][0]
    k = len(spellings[1])
    window = stream[start - 6 : start + k + 2].unsqueeze(0)
    with torch.no_grad():
        plain = model.model(window).last_hidden_state[0]
        logits = torch.log_softmax(model(window).logits[0], dim=-1)
    row = 2  # rows are token 0's two contexts, then token 1's
    torch.testing.assert_close(teacher.target_states[row], plain[6 + k - 1 :], rtol=1e-4, atol=1e-4)
    expected_log_p = sum(float(logits[5 + j, window[0, 6 + j]]) for j in range(k))
    log_z = float(torch.logsumexp(teacher.prefix_state[row] @ head.T, dim=-1))
    assert abs(float(teacher.target_logit[row]) - log_z - expected_log_p) < 1e-3

    rows = model.model.embed_tokens.weight[[spellings[0][0], spellings[1][0]]].float()
    one_piece = teacher.token_of_row == 0
    states = student_states(model, rows, teacher, settings)
    torch.testing.assert_close(states[one_piece], teacher.target_states[one_piece], rtol=1e-4, atol=1e-4)


def test_spellings_are_the_exact_old_pieces(smollm2_tokenizer, smollm2_czech_tokenizer_dir):
    target = AutoTokenizer.from_pretrained(smollm2_czech_tokenizer_dir)
    new_ids = torch.arange(V_SMOLLM2, V_SMOLLM2 + 50)
    for new_id, spelling in zip(new_ids.tolist(), spellings_of(smollm2_tokenizer, target, new_ids)):
        assert smollm2_tokenizer.decode(spelling) == target.decode([new_id]) and len(spelling) >= 2


def test_distill_needs_its_text(sliced_smollm2_dir, smollm2_czech_tokenizer_dir, tmp_path, capsys):
    with pytest.raises(InputError, match="--distill_text"):
        init_model(sliced_smollm2_dir, smollm2_czech_tokenizer_dir, tmp_path / "out", init="distill", progress=False)
    with pytest.raises(SystemExit) as exit_info:
        from colossal_lang.errors import run_cli

        run_cli(main, ["--source_model_and_tokenizer_path", str(sliced_smollm2_dir), "--target_tokenizer_path",
                       str(smollm2_czech_tokenizer_dir), "--target_model_path", str(tmp_path / "out"), "--init", "distill",
                       "--distill_text", str(tmp_path / "missing.jsonl")])
    assert exit_info.value.code == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and "missing.jsonl" in error and "not found" in error
    assert not (tmp_path / "out").exists()


def test_untied_models_fit_input_and_head_rows_separately(untied_sliced_smollm2_dir, smollm2_czech_tokenizer_dir, czech_text, tmp_path):
    from colossal_lang.model.distill_rows import DistillSettings as Settings

    settings = Settings(steps=4, max_tokens=16, batch_tokens=16, max_corpus_tokens=30_000, output_weight=0.002)
    _, baseline = grow(untied_sliced_smollm2_dir, smollm2_czech_tokenizer_dir, tmp_path / "mop", "mean_of_pieces")
    report, distilled = grow(untied_sliced_smollm2_dir, smollm2_czech_tokenizer_dir, tmp_path / "distill", "distill",
                             distill_text=czech_text, distill_settings=settings)
    source = AutoModelForCausalLM.from_pretrained(untied_sliced_smollm2_dir)
    assert not report.tied and not report.distill.tied and report.distill.reference_positions == 0
    assert torch.equal(distilled.lm_head.weight[:V_SMOLLM2], source.lm_head.weight)
    assert torch.equal(distilled.model.embed_tokens.weight[:V_SMOLLM2], source.model.embed_tokens.weight)
    new_ids = report.new_token_ids
    input_moved = (distilled.model.embed_tokens.weight[new_ids] != baseline.model.embed_tokens.weight[new_ids]).any(1)
    head_moved = (distilled.lm_head.weight[new_ids] != baseline.lm_head.weight[new_ids]).any(1)
    assert int(input_moved.sum()) == int(head_moved.sum()) == 16
    assert torch.equal(input_moved, head_moved)
    assert not torch.equal(distilled.lm_head.weight[new_ids[input_moved]], distilled.model.embed_tokens.weight[new_ids[input_moved]])


def test_untied_head_rows_keep_mean_of_pieces_unless_the_output_side_is_asked_for(untied_sliced_smollm2_dir, smollm2_czech_tokenizer_dir, czech_text, tmp_path):
    from colossal_lang.model.distill_rows import DistillSettings as Settings

    settings = Settings(steps=4, max_tokens=16, batch_tokens=16, max_corpus_tokens=30_000)
    assert settings.output_weight == 0.0
    _, baseline = grow(untied_sliced_smollm2_dir, smollm2_czech_tokenizer_dir, tmp_path / "mop", "mean_of_pieces")
    report, distilled = grow(untied_sliced_smollm2_dir, smollm2_czech_tokenizer_dir, tmp_path / "distill", "distill",
                             distill_text=czech_text, distill_settings=settings)
    new_ids = report.new_token_ids
    assert torch.equal(distilled.lm_head.weight[new_ids], baseline.lm_head.weight[new_ids])
    input_moved = (distilled.model.embed_tokens.weight[new_ids] != baseline.model.embed_tokens.weight[new_ids]).any(1)
    assert int(input_moved.sum()) == report.distill.distilled == 16


def test_tied_rows_hold_their_logits_at_the_reference_positions(sliced_smollm2_dir, smollm2_tokenizer, smollm2_czech_tokenizer_dir, czech_text, data_dir, tmp_path):
    """The same tied distillation with and without --distill_keep_logits_weight: with it, the distilled rows'
    logits at the English reference positions (final hidden states of the source) move less."""
    from colossal_lang.model.distill_rows import DistillSettings as Settings, iter_texts, reference_states

    english = [str(data_dir / "pretrain" / "en")]
    _, baseline = grow(sliced_smollm2_dir, smollm2_czech_tokenizer_dir, tmp_path / "mop", "mean_of_pieces")
    source = AutoModelForCausalLM.from_pretrained(sliced_smollm2_dir).eval()
    states = reference_states(source, smollm2_tokenizer, iter_texts(english), 256)
    moved = {}
    for weight in (0.0, 1.0):
        settings = Settings(steps=8, max_tokens=16, batch_tokens=16, max_corpus_tokens=30_000, keep_logits_weight=weight)
        report, model = grow(sliced_smollm2_dir, smollm2_czech_tokenizer_dir, tmp_path / f"keep{weight:g}", "distill",
                             distill_text=czech_text, distill_reference_text=english, distill_settings=settings)
        rows = model.model.embed_tokens.weight[report.new_token_ids]
        fitted = (rows != baseline.model.embed_tokens.weight[report.new_token_ids]).any(1)
        change = (rows - baseline.model.embed_tokens.weight[report.new_token_ids])[fitted]
        moved[weight] = float(((states @ change.T) ** 2).mean())
        assert int(fitted.sum()) == 16
    assert moved[1.0] < 0.5 * moved[0.0]
