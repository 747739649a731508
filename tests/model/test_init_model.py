"""Model initialisation for a grown vocabulary, on the real SmolLM2 (2 layers) and on tiny Mistral-vocabulary Llamas."""

from __future__ import annotations

import copy
import json
import math
import shutil
import tempfile
from pathlib import Path
import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from colossal_lang.errors import InputError
from colossal_lang.model.init_model import expand_model, init_model, main
from colossal_lang.model.new_token_rows import PIECE_WEIGHT

V_SMOLLM2 = 49152


def grow(source_dir, tokenizer_dir, folder: Path, init="mean_of_pieces", **kwargs):
    """init_model into a new folder under `folder`: a test's tmp_path (removed when it passes) or a session's."""
    output_dir = Path(tempfile.mkdtemp(prefix=f"grown-{init}-", dir=folder)) / "model"
    report = init_model(source_dir, tokenizer_dir, output_dir, init=init, progress=False, **kwargs)
    return report, AutoModelForCausalLM.from_pretrained(output_dir).eval(), output_dir


@pytest.fixture(scope="session")
def grown_tied(sliced_smollm2_dir, smollm2_czech_tokenizer_dir, tmp_path_factory):
    return grow(sliced_smollm2_dir, smollm2_czech_tokenizer_dir, tmp_path_factory.mktemp("grown-tied"))


@pytest.fixture(scope="session")
def grown_untied(untied_sliced_smollm2_dir, smollm2_czech_tokenizer_dir, tmp_path_factory):
    return grow(untied_sliced_smollm2_dir, smollm2_czech_tokenizer_dir, tmp_path_factory.mktemp("grown-untied"))


def next_token_logits(model, tokenizer, texts):
    with torch.no_grad():
        return [model(tokenizer(text, return_tensors="pt").input_ids).logits[0] for text in texts]


def expected_piece_mean(weight, source_tokenizer, piece_tokens):
    ids = source_tokenizer.convert_tokens_to_ids(piece_tokens)
    return weight[ids].float().mean(0)


def expected_head_row(weight, source_tokenizer, piece_tokens, piece_weight=PIECE_WEIGHT):
    """mean_of_pieces' head row (the shared row when tied): the piece mean pulled toward the mean real row."""
    mean_row = weight[: len(source_tokenizer)].float().mean(0)
    return mean_row + piece_weight * (expected_piece_mean(weight, source_tokenizer, piece_tokens) - mean_row)


@pytest.mark.parametrize("grown_fixture, source_fixture", [("grown_tied", "sliced_smollm2_dir"), ("grown_untied", "untied_sliced_smollm2_dir")])
def test_old_vocabulary_logits_are_identical_on_english(request, grown_fixture, source_fixture, smollm2_tokenizer, english_heldout):
    _, grown, _ = request.getfixturevalue(grown_fixture)
    source = AutoModelForCausalLM.from_pretrained(request.getfixturevalue(source_fixture)).eval()
    for before, after in zip(next_token_logits(source, smollm2_tokenizer, english_heldout), next_token_logits(grown, smollm2_tokenizer, english_heldout)):
        assert after.shape[1] > V_SMOLLM2
        assert torch.equal(before, after[:, :V_SMOLLM2])


def test_new_rows_are_means_of_their_pieces_and_the_head_comes_from_the_head(grown_untied, untied_sliced_smollm2_dir, smollm2_tokenizer, smollm2_czech_tokenizer_dir):
    report, grown, _ = grown_untied
    source = AutoModelForCausalLM.from_pretrained(untied_sliced_smollm2_dir)
    target = AutoTokenizer.from_pretrained(smollm2_czech_tokenizer_dir)
    new_tokens = target.convert_ids_to_tokens(report.new_token_ids.tolist())
    assert report.init == "mean_of_pieces" and not report.tied and report.piece_weight == PIECE_WEIGHT < 1
    source_vocab = smollm2_tokenizer.get_vocab()
    assert all(token not in source_vocab for token in new_tokens)
    checked = 0
    for new_id, token in zip(report.new_token_ids.tolist(), new_tokens):
        pieces = smollm2_tokenizer.tokenize(target.convert_tokens_to_string([token]))
        if len(pieces) < 2 or "".join(pieces) != token:
            continue  # tokens whose surface text re-encodes to exactly their own spelling: expected = plain mean
        # Untied: input rows are the plain mean of the pieces; head rows come from the head, pulled toward its mean.
        torch.testing.assert_close(grown.model.embed_tokens.weight[new_id], expected_piece_mean(source.model.embed_tokens.weight, smollm2_tokenizer, pieces))
        torch.testing.assert_close(grown.lm_head.weight[new_id], expected_head_row(source.lm_head.weight, smollm2_tokenizer, pieces))
        assert not torch.equal(grown.lm_head.weight[new_id], grown.model.embed_tokens.weight[new_id])
        checked += 1
        if checked == 200:
            break
    assert checked == 200


def test_byte_level_pieces_are_all_averaged(grown_tied, sliced_smollm2_dir, smollm2_tokenizer):
    report, grown, output_dir = grown_tied
    target = AutoTokenizer.from_pretrained(output_dir)
    token = "ĠpÅĻÃŃ"  # " pří": pieces Ġp, Å, Ļ (the two bytes of ř), ÃŃ (í); all four count
    assert smollm2_tokenizer.tokenize(" pří") == ["Ġp", "Å", "Ļ", "ÃŃ"]
    new_id = target.convert_tokens_to_ids(token)
    assert new_id >= V_SMOLLM2
    source = AutoModelForCausalLM.from_pretrained(sliced_smollm2_dir)
    expected = expected_head_row(source.model.embed_tokens.weight, smollm2_tokenizer, ["Ġp", "Å", "Ļ", "ÃŃ"])
    torch.testing.assert_close(grown.model.embed_tokens.weight[new_id], expected)  # tied: one row, pulled toward the mean


def kl_old_new(source, grown, tokenizer, texts, old_size):
    values = []
    for before, after in zip(next_token_logits(source, tokenizer, texts), next_token_logits(grown, tokenizer, texts)):
        log_p, log_q = before.log_softmax(-1), after.log_softmax(-1)[:, :old_size]
        values.append((log_p.exp() * (log_p - log_q)).sum(-1))
    return torch.cat(values)


@pytest.mark.parametrize("source_fixture", ["sliced_smollm2_dir", "untied_sliced_smollm2_dir"])
def test_mean_init_keeps_kl_under_log_one_plus_n_over_v(request, source_fixture, smollm2_czech_tokenizer_dir, smollm2_tokenizer, english_heldout, tmp_path):
    source_dir = request.getfixturevalue(source_fixture)
    report, grown, _ = grow(source_dir, smollm2_czech_tokenizer_dir, tmp_path, init="mean")
    source = AutoModelForCausalLM.from_pretrained(source_dir).eval()
    kl = kl_old_new(source, grown, smollm2_tokenizer, english_heldout, V_SMOLLM2)
    bound = math.log(1 + len(report.new_token_ids) / V_SMOLLM2)
    assert kl.max() < bound, (kl.max(), bound)
    assert kl.max() > 0  # the new rows do take some mass: the measure is not vacuous


def test_mean_of_pieces_kl_on_english_is_bounded_on_average(grown_tied, sliced_smollm2_dir, smollm2_tokenizer, english_heldout):
    report, grown, _ = grown_tied
    source = AutoModelForCausalLM.from_pretrained(sliced_smollm2_dir).eval()
    kl = kl_old_new(source, grown, smollm2_tokenizer, english_heldout, V_SMOLLM2)
    bound = math.log(1 + len(report.new_token_ids) / V_SMOLLM2)
    assert kl.mean() < bound, (kl.mean(), bound)
    print(f"mean_of_pieces KL on English: mean {kl.mean():.4f}, max {kl.max():.4f}; log(1+n/V) = {bound:.4f}")


def new_token_mass_and_kl(model, source, tokenizer, texts):
    """Per English position: probability the new ids take, and KL(source || model over the old ids)."""
    mass, kl = [], []
    for before, after in zip(next_token_logits(source, tokenizer, texts), next_token_logits(model, tokenizer, texts)):
        log_p, log_q = before.log_softmax(-1), after.log_softmax(-1)
        mass.append(log_q[:, V_SMOLLM2:].exp().sum(-1))
        kl.append((log_p.exp() * (log_p - log_q[:, :V_SMOLLM2])).sum(-1))
    return torch.cat(mass), torch.cat(kl)


def czech_nll(model, tokenizer, texts):
    """Summed next-token NLL of Czech text in the expanded tokenizer (same tokens for every init)."""
    total = 0.0
    with torch.no_grad():
        for text in texts:
            ids = tokenizer(text, return_tensors="pt").input_ids
            total += float(torch.nn.functional.cross_entropy(model(ids).logits[0, :-1], ids[0, 1:], reduction="sum"))
    return total


def test_default_piece_weight_takes_less_from_english_and_keeps_czech(sliced_smollm2_dir, smollm2_czech_tokenizer_dir, smollm2_tokenizer, english_heldout, czech_heldout):
    """The default pull toward the mean row: new tokens take less probability at English positions than
    with the plain mean of their pieces (lower KL to the source), and Czech stays better than the mean row."""
    source = AutoModelForCausalLM.from_pretrained(sliced_smollm2_dir).eval()
    target = AutoTokenizer.from_pretrained(smollm2_czech_tokenizer_dir)

    def grown_copy(init, piece_weight=PIECE_WEIGHT):
        model = copy.deepcopy(source)
        expand_model(model, smollm2_tokenizer, target, init, piece_weight=piece_weight, progress=False)
        return model.eval()

    default, plain, mean = grown_copy("mean_of_pieces"), grown_copy("mean_of_pieces", 1.0), grown_copy("mean")
    default_mass, default_kl = new_token_mass_and_kl(default, source, smollm2_tokenizer, english_heldout)
    plain_mass, plain_kl = new_token_mass_and_kl(plain, source, smollm2_tokenizer, english_heldout)
    print(f"English: new-token mass {default_mass.mean():.2e} (plain pieces {plain_mass.mean():.2e}); "
          f"KL {default_kl.mean():.2e} (plain pieces {plain_kl.mean():.2e})")
    assert default_mass.mean() < plain_mass.mean() and default_kl.mean() < plain_kl.mean()
    assert torch.allclose(default_mass, 1 - torch.exp(-default_kl), atol=1e-4)  # tied: mass taken is the KL, no other change

    nll = {name: czech_nll(model, target, czech_heldout) for name, model in (("default", default), ("plain", plain), ("mean", mean))}
    print("Czech NLL:", nll)
    assert nll["plain"] < nll["mean"]  # the pieces carry information on this slice: the comparison is not vacuous
    # The pulled rows still carry the pieces: better than the mean row. (On this 2-layer slice the pull costs
    # about half of the pieces' gain; on the full model 0.7% of Czech bits/byte, see docs/model_init.md.)
    assert nll["default"] < nll["mean"]


def test_output_folder_round_trips_tied_and_padded(grown_tied, smollm2_czech_tokenizer_dir, smollm2_tokenizer, english_heldout, czech_heldout):
    report, grown, output_dir = grown_tied
    tokenizer = AutoTokenizer.from_pretrained(output_dir)
    expected = AutoTokenizer.from_pretrained(smollm2_czech_tokenizer_dir)
    assert tokenizer.get_vocab() == expected.get_vocab()
    text = czech_heldout[0]
    assert tokenizer(text)["input_ids"] == expected(text)["input_ids"]
    assert grown.lm_head.weight.data_ptr() == grown.model.embed_tokens.weight.data_ptr()
    assert grown.config.tie_word_embeddings and grown.dtype == torch.float32
    assert grown.config.vocab_size == grown.model.embed_tokens.weight.shape[0] == report.new_rows
    assert report.new_rows % 64 == 0 and report.new_rows > len(tokenizer) == report.target_vocab_size
    assert report.padding_ids.tolist() == list(range(len(tokenizer), report.new_rows))

    # Padding ids are never predicted: all of them together get under 1e-3 in every context, both languages.
    for logits in next_token_logits(grown, tokenizer, english_heldout + czech_heldout):
        padding_mass = logits.softmax(-1)[:, report.padding_ids].sum(-1)
        assert padding_mass.max() < 1e-3, padding_mass.max()


def test_dtype_is_kept_or_converted_and_the_cli_reports(tiny_untied_llama_dir, mistral_czech_tokenizer_dir, tmp_path, capsys):
    to_bf16 = tmp_path / "bf16"
    main(["--source_model_and_tokenizer_path", str(tiny_untied_llama_dir), "--target_tokenizer_path", str(mistral_czech_tokenizer_dir), "--target_model_path", str(to_bf16), "--dtype", "bfloat16"])
    printed = capsys.readouterr().out
    assert "300 new tokens" in printed and "padding rows: 20" in printed and "dtype: bfloat16" in printed and str(to_bf16) in printed
    model = AutoModelForCausalLM.from_pretrained(to_bf16, torch_dtype="auto")
    assert model.dtype == torch.bfloat16 and model.config.vocab_size == 32320
    kept = tmp_path / "kept"
    main(["--source_model_and_tokenizer_path", str(tiny_untied_llama_dir), "--target_tokenizer_path", str(mistral_czech_tokenizer_dir), "--target_model_path", str(kept), "--init", "mean", "--pad_to_multiple_of", "0"])
    model = AutoModelForCausalLM.from_pretrained(kept, torch_dtype="auto")
    assert model.dtype == torch.float32 and model.config.vocab_size == 32300


def test_sentencepiece_pieces_leave_out_the_dummy_prefix(tiny_untied_llama_dir, mistral_czech_tokenizer_dir, tmp_path):
    report, grown, _ = grow(tiny_untied_llama_dir, mistral_czech_tokenizer_dir, tmp_path)
    source_tokenizer = AutoTokenizer.from_pretrained(tiny_untied_llama_dir)
    target = AutoTokenizer.from_pretrained(mistral_czech_tokenizer_dir)
    source = AutoModelForCausalLM.from_pretrained(tiny_untied_llama_dir)
    assert report.new_token_ids.tolist() == list(range(32000, 32300))
    with_prefix_piece = 0
    for new_id in report.new_token_ids.tolist():
        token = target.convert_ids_to_tokens(new_id)
        pieces = [p.value for p in source_tokenizer.backend_tokenizer.model.tokenize(token)]
        whole = [p for p in pieces if p != "\u2581"]
        with_prefix_piece += len(whole) < len(pieces)
        torch.testing.assert_close(grown.model.embed_tokens.weight[new_id], expected_piece_mean(source.model.embed_tokens.weight, source_tokenizer, whole))
        torch.testing.assert_close(grown.lm_head.weight[new_id], expected_head_row(source.lm_head.weight, source_tokenizer, whole))
    assert with_prefix_piece > 0  # some Czech words do start with a lone ▁ piece: the rule was exercised
    assert torch.equal(grown.lm_head.weight[:32000], source.lm_head.weight)


def test_checkpoint_padded_past_its_tokenizer_resolves_new_ids_from_the_tokenizer(tiny_padded_llama_dir, mistral_czech_tokenizer_dir, tmp_path):
    report, grown, _ = grow(tiny_padded_llama_dir, mistral_czech_tokenizer_dir, tmp_path, init="mean")
    source = AutoModelForCausalLM.from_pretrained(tiny_padded_llama_dir)
    assert report.source_rows == 32064 and report.new_rows == 32320
    mean_row = source.model.embed_tokens.weight[:32000].mean(0)
    # ids 32000..32063 were checkpoint padding: now real tokens, given the mean of the real rows, not the old rows.
    torch.testing.assert_close(grown.model.embed_tokens.weight[32000:32300], mean_row.expand(300, -1))
    assert not torch.equal(grown.model.embed_tokens.weight[32000:32064], source.model.embed_tokens.weight[32000:32064])
    assert torch.equal(grown.model.embed_tokens.weight[:32000], source.model.embed_tokens.weight[:32000])


def test_align_copies_rows_through_the_map_across_tokenizer_families(tiny_untied_llama_dir, smollm2_dir, tmp_path):
    """A swap from Mistral's SentencePiece to SmolLM2's byte-level vocabulary: mapped rows copied, the rest from pieces."""
    swapped_dir = tmp_path / "swapped-tok"
    target = AutoTokenizer.from_pretrained(smollm2_dir)
    target.save_pretrained(swapped_dir)
    source_tokenizer = AutoTokenizer.from_pretrained(tiny_untied_llama_dir)
    source_vocab = source_tokenizer.get_vocab()
    new_to_old = {i: source_vocab["\u2581" + t[1:]] for t, i in target.get_vocab().items() if t.startswith("Ġ") and "\u2581" + t[1:] in source_vocab}
    (swapped_dir / "token_alignment.json").write_text(json.dumps({"source_tokenizer": str(tiny_untied_llama_dir), "new_to_old": {str(k): v for k, v in new_to_old.items()}}))
    report, grown, _ = grow(tiny_untied_llama_dir, swapped_dir, tmp_path, init="align")
    source = AutoModelForCausalLM.from_pretrained(tiny_untied_llama_dir)
    new_id, old_id = target.convert_tokens_to_ids("Ġthe"), source_vocab["\u2581the"]
    assert torch.equal(grown.lm_head.weight[new_id], source.lm_head.weight[old_id])
    assert len(report.new_token_ids) == V_SMOLLM2 - len(new_to_old)
    unaligned = target.convert_tokens_to_ids("Ġpříliš") if "Ġpříliš" in target.get_vocab() else target.convert_tokens_to_ids("ing")
    assert unaligned not in new_to_old
    pieces = source_tokenizer.tokenize(target.convert_tokens_to_string([target.convert_ids_to_tokens(unaligned)]))
    whole = [p for p in pieces if p != "\u2581"]
    torch.testing.assert_close(grown.lm_head.weight[unaligned], expected_piece_mean(source.lm_head.weight, source_tokenizer, whole))


def test_added_tokens_are_encoded_from_their_text(sliced_smollm2_dir, smollm2_tokenizer, tmp_path):
    tokenizer_dir = tmp_path / "added-tok"
    tokenizer = AutoTokenizer.from_pretrained(sliced_smollm2_dir)
    tokenizer.add_tokens(["příliš", "žluťoučký"])
    tokenizer.save_pretrained(tokenizer_dir)
    report, grown, _ = grow(sliced_smollm2_dir, tokenizer_dir, tmp_path, pad_to_multiple_of=1)
    source = AutoModelForCausalLM.from_pretrained(sliced_smollm2_dir)
    assert report.new_token_ids.tolist() == [V_SMOLLM2, V_SMOLLM2 + 1] and report.new_rows == V_SMOLLM2 + 2
    pieces = smollm2_tokenizer.tokenize("příliš")
    assert pieces == ["p", "Å", "Ļ", "ÃŃ", "li", "Å¡"]
    torch.testing.assert_close(grown.model.embed_tokens.weight[V_SMOLLM2], expected_head_row(source.model.embed_tokens.weight, smollm2_tokenizer, pieces))
    # piece_weight 1 gives the plain mean of the pieces
    _, plain, _ = grow(sliced_smollm2_dir, tokenizer_dir, tmp_path, pad_to_multiple_of=1, piece_weight=1.0)
    torch.testing.assert_close(plain.model.embed_tokens.weight[V_SMOLLM2], expected_piece_mean(source.model.embed_tokens.weight, smollm2_tokenizer, pieces))


def run_cli_expecting_error(argv, capsys):
    from colossal_lang.errors import run_cli

    with pytest.raises(SystemExit) as exit_info:
        run_cli(main, argv)
    assert exit_info.value.code == 2
    return capsys.readouterr().err


def test_bad_inputs_give_one_line_errors(tmp_path, tiny_untied_llama_dir, smollm2_dir, mistral_czech_tokenizer_dir, capsys):
    flags = lambda source, target: ["--source_model_and_tokenizer_path", str(source), "--target_tokenizer_path", str(target), "--target_model_path", str(tmp_path / "out")]
    message = run_cli_expecting_error(flags(tmp_path / "missing", mistral_czech_tokenizer_dir), capsys)
    assert "missing: source model folder not found" in message
    message = run_cli_expecting_error(flags(tiny_untied_llama_dir, smollm2_dir), capsys)
    assert "target tokenizer lacks" in message and "of the source's 32000 tokens" in message and "--init align" in message
    message = run_cli_expecting_error(flags(tiny_untied_llama_dir, smollm2_dir) + ["--init", "align"], capsys)
    assert "token_alignment.json" in message
    message = run_cli_expecting_error(flags(tiny_untied_llama_dir, mistral_czech_tokenizer_dir) + ["--piece_weight", "1.5"], capsys)
    assert "piece_weight must be between 0 and 1" in message and message.count("\n") == 1

    too_small = tmp_path / "too-small"  # a checkpoint with fewer rows than its tokenizer has tokens
    model = AutoModelForCausalLM.from_pretrained(tiny_untied_llama_dir)
    model.resize_token_embeddings(31990, mean_resizing=False)
    model.save_pretrained(too_small)
    AutoTokenizer.from_pretrained(tiny_untied_llama_dir).save_pretrained(too_small)
    message = run_cli_expecting_error(flags(too_small, mistral_czech_tokenizer_dir), capsys)
    assert "31990 embedding rows but its tokenizer has 32000 tokens" in message
    assert not (tmp_path / "out").exists()
    with pytest.raises(InputError):
        init_model(tiny_untied_llama_dir, mistral_czech_tokenizer_dir, tiny_untied_llama_dir, progress=False)


def test_random_rows_use_the_models_initializer_and_an_unchanged_vocabulary_copies_the_model(tiny_untied_llama_dir, mistral_tokenizer_dir, mistral_czech_tokenizer_dir, tmp_path):
    report, grown, _ = grow(tiny_untied_llama_dir, mistral_czech_tokenizer_dir, tmp_path, init="random")
    new_rows = grown.model.embed_tokens.weight[report.new_token_ids]
    assert abs(float(new_rows.std()) - grown.config.initializer_range) < 0.002 and abs(float(new_rows.mean())) < 0.002
    assert not torch.equal(grown.lm_head.weight[report.new_token_ids], new_rows)

    report, same, _ = grow(tiny_untied_llama_dir, mistral_tokenizer_dir, tmp_path)
    source = AutoModelForCausalLM.from_pretrained(tiny_untied_llama_dir)
    assert len(report.new_token_ids) == 0 and len(report.padding_ids) == 0  # 32000 is already a multiple of 64
    for name, tensor in source.state_dict().items():
        assert torch.equal(tensor, same.state_dict()[name]), name


def test_alignment_naming_rows_the_model_lacks_is_an_input_error(tiny_untied_llama_dir, mistral_czech_tokenizer_dir, tmp_path):
    tokenizer_dir = tmp_path / "tok"
    shutil.copytree(mistral_czech_tokenizer_dir, tokenizer_dir)
    (tokenizer_dir / "token_alignment.json").write_text(json.dumps({"new_to_old": {"32000": 40000}}))
    with pytest.raises(InputError, match="copies source row 40000; the model has rows 0..31999") as error:
        init_model(tiny_untied_llama_dir, tokenizer_dir, tmp_path / "out", init="align", progress=False)
    assert error.value.path == str(tokenizer_dir)
