"""Bits per byte: equal to hand computations, window convention as documented, real model sanity, CLI errors."""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from colossal_lang.errors import InputError
from colossal_lang.evaluation.perplexity import bits_per_byte, document_prefix_ids, main, read_documents


def short_texts(data_dir, count=4, chars=160):
    texts = read_documents(data_dir / "heldout" / "cs_fortunes.jsonl", max_documents=count)
    return [text[:chars] for text in texts]


def test_uniform_model_matches_closed_form(uniform_model, smollm2_tokenizer, data_dir):
    texts = short_texts(data_dir) + ["Příliš žluťoučký kůň úpěl ďábelské ódy."]
    result = bits_per_byte(uniform_model, smollm2_tokenizer, texts, max_length=16, stride=8, batch_size=3, progress=False)

    token_count = sum(len(smollm2_tokenizer(t, add_special_tokens=False)["input_ids"]) for t in texts)
    byte_count = sum(len(t.encode("utf-8")) for t in texts)
    vocab = len(smollm2_tokenizer)
    assert result.num_tokens == token_count
    assert result.num_bytes == byte_count > result.num_characters  # Czech diacritics take two bytes
    assert result.bits_per_byte == pytest.approx(token_count * math.log2(vocab) / byte_count, rel=1e-5)
    assert result.token_perplexity == pytest.approx(vocab, rel=1e-4)
    assert result.num_documents == len(texts)
    default_stride = bits_per_byte(uniform_model, smollm2_tokenizer, texts[:1], max_length=16, progress=False)
    assert default_stride.stride == 8  # max_length // 2 when no stride is given


def brute_force_nll(model, sequence, first_target, max_length, stride):
    """Score each token from its own forward pass over exactly the context the documented convention gives."""
    total, min_context = 0.0, None
    for position in range(first_target, len(sequence)):
        begin = 0
        # The first window (begin = k * stride) whose end reaches past `position` scores it.
        while min(begin + max_length, len(sequence)) <= position:
            begin += stride
        context = sequence[begin:position]
        if begin > 0:
            min_context = len(context) if min_context is None else min(min_context, len(context))
        with torch.no_grad():
            logits = model(torch.tensor([context])).logits[0, -1]
        total -= torch.log_softmax(logits.float(), -1)[sequence[position]].item()
    return total, min_context


def test_sliding_window_equals_brute_force(tiny_model, smollm2_tokenizer, data_dir):
    texts = short_texts(data_dir, count=3, chars=120)
    max_length, stride = 12, 5
    result = bits_per_byte(tiny_model, smollm2_tokenizer, texts, max_length=max_length, stride=stride,
                           batch_size=4, progress=False)
    eos = smollm2_tokenizer.eos_token_id
    expected, smallest_context = 0.0, []
    for text in texts:
        ids = smollm2_tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(ids) > 2 * max_length  # several windows per document
        nll, min_context = brute_force_nll(tiny_model, [eos] + ids, 1, max_length, stride)
        expected += nll
        smallest_context.append(min_context)
    assert result.nll_nats == pytest.approx(expected, rel=1e-5)
    assert min(smallest_context) >= max_length - stride
    byte_count = sum(len(t.encode("utf-8")) for t in texts)
    assert result.bits_per_byte == pytest.approx(expected / (math.log(2) * byte_count), rel=1e-5)


def test_batching_and_window_do_not_change_short_documents(tiny_model, smollm2_tokenizer, data_dir):
    texts = short_texts(data_dir, count=5, chars=60)
    settings = dict(max_length=512, stride=256, progress=False)
    one_by_one = bits_per_byte(tiny_model, smollm2_tokenizer, texts, batch_size=1, **settings)
    batched = bits_per_byte(tiny_model, smollm2_tokenizer, texts, batch_size=5, **settings)
    assert batched.num_windows == one_by_one.num_windows == len(texts)
    assert batched.nll_nats == pytest.approx(one_by_one.nll_nats, rel=1e-5)


def test_document_start_context_per_tokenizer(smollm2_tokenizer, mistral_spm_path):
    from transformers import LlamaTokenizer

    # SmolLM2 adds no BOS: the eos token (<|im_end|>) is put before each document.
    assert document_prefix_ids(smollm2_tokenizer) == [smollm2_tokenizer.eos_token_id]
    # A LLaMA-style tokenizer adds <s> itself: the first text token is predicted from it.
    llama_tokenizer = LlamaTokenizer(vocab_file=str(mistral_spm_path), legacy=False)
    assert document_prefix_ids(llama_tokenizer) == [llama_tokenizer.bos_token_id]


@pytest.mark.slow
def test_real_model_knows_english_better_than_czech(smollm2_dir, data_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(smollm2_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    czech = read_documents(data_dir / "heldout" / "cs_libreoffice_help.jsonl", max_documents=2)
    english = read_documents(data_dir / "heldout" / "en_libreoffice_help.jsonl", max_documents=2)
    czech_result = bits_per_byte(model, tokenizer, [t[:400] for t in czech], max_length=256, stride=128, progress=False)
    english_result = bits_per_byte(model, tokenizer, [t[:400] for t in english], max_length=256, stride=128, progress=False)
    assert 0.3 < english_result.bits_per_byte < czech_result.bits_per_byte < 8
    assert english_result.characters_per_token > czech_result.characters_per_token


def test_invalid_window_and_text_arguments(tiny_model, smollm2_tokenizer):
    with pytest.raises(ValueError, match="stride"):
        bits_per_byte(tiny_model, smollm2_tokenizer, ["abc"], max_length=8, stride=8)
    with pytest.raises(TypeError):
        bits_per_byte(tiny_model, smollm2_tokenizer, "one string")


def test_cli_reports_each_file_as_the_function_does(sliced_smollm2_dir, data_dir, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    output = tmp_path / "bpb.json"
    files = [data_dir / "heldout" / "cs_fortunes.jsonl", data_dir / "heldout" / "en_libreoffice_help.jsonl"]
    main(["--model_path", str(sliced_smollm2_dir), "--data", *map(str, files), "--max_documents", "2",
          "--max_characters", "300", "--max_length", "128", "--stride", "64", "--no_progress", "--output_json", str(output)])
    printed = capsys.readouterr().out
    report = json.loads(output.read_text())
    assert set(report["files"]) == {str(f) for f in files}
    model = AutoModelForCausalLM.from_pretrained(sliced_smollm2_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(sliced_smollm2_dir)
    for path in files:
        texts = [text[:300] for text in read_documents(path, max_documents=2)]
        assert texts == read_documents(path, max_documents=2, max_characters=300)
        expected = bits_per_byte(model, tokenizer, texts, 128, 64, progress=False)
        assert report["files"][str(path)]["num_characters"] == sum(map(len, texts))
        assert report["files"][str(path)]["num_documents"] == 2
        assert report["files"][str(path)]["bits_per_byte"] == pytest.approx(expected.bits_per_byte, rel=1e-4)
        assert f"{expected.bits_per_byte:.4f}" in printed


def test_cli_names_file_and_line_of_a_bad_row(tmp_path, sliced_smollm2_dir):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"target": "dobrý den"}\n{"text": "no target here"}\n', encoding="utf-8")
    with pytest.raises(InputError) as caught:
        main(["--model_path", str(sliced_smollm2_dir), "--data", str(bad)])
    assert caught.value.path == str(bad) and caught.value.line == 2


def test_cli_bad_model_path_exits_2_with_one_line(tmp_path, data_dir):
    completed = subprocess.run(
        [sys.executable, "-m", "colossal_lang.evaluation.perplexity", "--model_path", str(tmp_path / "missing"),
         "--data", str(data_dir / "heldout" / "cs_fortunes.jsonl"), "--max_documents", "1"],
        capture_output=True, text=True, timeout=120,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().count("\n") == 0
    assert "no such model folder" in completed.stderr and str(tmp_path / "missing") in completed.stderr


def test_broken_model_folders_and_bad_flags_are_one_line_input_errors(sliced_smollm2_dir, data_dir, tmp_path):
    import shutil

    data = ["--data", str(data_dir / "heldout" / "cs_fortunes.jsonl"), "--max_documents", "1", "--no_progress"]
    truncated_tokenizer = tmp_path / "truncated-tokenizer"
    shutil.copytree(sliced_smollm2_dir, truncated_tokenizer)
    text = (truncated_tokenizer / "tokenizer.json").read_text(encoding="utf-8")
    (truncated_tokenizer / "tokenizer.json").write_text(text[: len(text) // 2], encoding="utf-8")
    with pytest.raises(InputError, match="invalid JSON") as caught:  # was a bare Exception from tokenizers
        main(["--model_path", str(truncated_tokenizer), *data])
    assert caught.value.path == str(truncated_tokenizer / "tokenizer.json") and caught.value.line > 1

    truncated_weights = tmp_path / "truncated-weights"
    shutil.copytree(sliced_smollm2_dir, truncated_weights)
    weights = truncated_weights / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:4096])
    with pytest.raises(InputError, match="cannot load a causal LM: SafetensorError") as caught:
        main(["--model_path", str(truncated_weights), *data])
    assert caught.value.path == str(truncated_weights)

    with pytest.raises(InputError, match="--batch_size must be at least 1, got 0"):  # was range() arg 3 must not be zero
        main(["--model_path", str(sliced_smollm2_dir), *data, "--batch_size", "0"])
    with pytest.raises(InputError, match="stride must be in 1..max_length-1"):
        main(["--model_path", str(sliced_smollm2_dir), *data, "--max_length", "64", "--stride", "64"])
