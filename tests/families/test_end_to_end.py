"""Tokenizer to trained model, for a tiny model of each architecture with its family's real tokenizer.

Llama (Llama 3 tokenizer, untied), Qwen3 (Qwen 3 tokenizer, tied, a checkpoint padded to 151,936 rows past
151,669 ids as Qwen ships it), Gemma 3 text (Gemma 3 tokenizer, tied, embeddings scaled by sqrt(d), 262,208
rows as the larger Gemma 3 checkpoints) and Mistral (tokenizer.model + tokenizer.json, untied): init_model,
prepare_pretrain_dataset.py, prepare_sft_dataset.py (the family's own chat template), train.py on 2 gloo
workers and evaluation, each on real text.
"""

from __future__ import annotations

import json
import math

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

from tests.training.conftest import base_args, run_training, step_records

# name -> (model_type, embedding rows, tied, chat template for prepare_sft)
ARCHITECTURES = {
    "llama3": ("llama", 128256, False, "tokenizer"),
    "qwen3": ("qwen3", 151936, True, "tokenizer"),
    "gemma3": ("gemma3_text", 262208, True, "tokenizer"),
    "mistral": ("mistral", 32000, False, "llama2"),  # Mistral v1's tokenizer carries no template
}
ENGLISH = "The President shall, from time to time, give to the Congress information of the state of the union."


def build_tiny_model(name: str, base_tokenizer_dir, output_dir):
    """A random model of the family's architecture from a config, with the real tokenizer beside it."""
    model_type, rows, tied, _ = ARCHITECTURES[name]
    tokenizer = AutoTokenizer.from_pretrained(base_tokenizer_dir)
    config = AutoConfig.for_model(
        model_type, vocab_size=rows, hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, max_position_embeddings=512, tie_word_embeddings=tied,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    if not tied:  # a head clearly different from the embeddings
        model.get_output_embeddings().weight.data.normal_(0.0, 0.2)
    model.save_pretrained(output_dir)
    tokenizer.save_pretrained(output_dir)
    return output_dir


def old_vocabulary_logits(model_dir, ids, old_size):
    model = AutoModelForCausalLM.from_pretrained(model_dir, torch_dtype=torch.float32).eval()
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0, :, :old_size]


def check_special_ids(model_dir, base_tokenizer):
    """config.json and generation_config.json name the same BOS/EOS/PAD tokens as before, by id and by string."""
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    generation = json.loads((model_dir / "generation_config.json").read_text())
    for role in ("bos", "eos", "pad"):
        expected = getattr(base_tokenizer, f"{role}_token_id")
        assert getattr(tokenizer, f"{role}_token_id") == expected, role
        for source in (config, generation):
            if expected is not None or source.get(f"{role}_token_id") is not None:
                assert source.get(f"{role}_token_id") == expected, (role, source)
        if expected is not None:
            assert tokenizer.convert_ids_to_tokens(expected) == base_tokenizer.convert_ids_to_tokens(expected)


def first_rows(path, count, tmp_path):
    out = tmp_path / path.name
    with open(path, encoding="utf-8") as source:
        out.write_text("".join(line for _, line in zip(range(count), source)), encoding="utf-8")
    return out


@pytest.mark.slow
# Llama 3 runs in `make test`; the other three (about 150 s together on 2 cores) in `make test-extended`, to keep
# the default suite inside CI's 15 minutes.
@pytest.mark.parametrize("name", [name if name == "llama3" else pytest.param(name, marks=pytest.mark.extended)
                                  for name in ARCHITECTURES])
def test_family_end_to_end(name, expanded, data_dir, tmp_path):
    from colossal_lang.data.prepare_pretrain import main as prepare_pretrain
    from colossal_lang.data.prepare_sft import main as prepare_sft
    from colossal_lang.evaluation.perplexity import main as perplexity
    from colossal_lang.model.init_model import main as init_model

    model_type, rows, tied, template = ARCHITECTURES[name]
    base_tokenizer_dir, expanded_dir, plan = expanded(name)
    base = build_tiny_model(name, base_tokenizer_dir, tmp_path / "base")
    base_tokenizer = AutoTokenizer.from_pretrained(base)
    grown_dir = tmp_path / "grown"
    report = init_model(["--source_model_and_tokenizer_path", str(base), "--target_tokenizer_path", str(expanded_dir),
                         "--target_model_path", str(grown_dir)])

    # The grown checkpoint: every token has a row, no row of the source is lost, old rows are untouched.
    old_size = len(base_tokenizer)
    assert report.target_vocab_size == old_size + len(plan.new_tokens)
    assert report.new_rows >= max(rows, report.target_vocab_size) and report.new_rows % 64 == 0
    grown = AutoModelForCausalLM.from_pretrained(grown_dir)
    source = AutoModelForCausalLM.from_pretrained(base)
    assert grown.config.model_type == model_type and grown.get_input_embeddings().weight.shape[0] == report.new_rows
    new_rows = grown.get_input_embeddings().weight[old_size:report.target_vocab_size]
    if rows > old_size:  # checkpoint padding rows now hold new tokens: those start fresh, not from the padding
        reused = source.get_input_embeddings().weight[old_size:rows]
        assert not torch.equal(new_rows[: len(reused)], reused[: len(new_rows)])
    assert (grown.get_output_embeddings().weight is grown.get_input_embeddings().weight) == tied
    if model_type == "gemma3_text":
        embedding = grown.get_input_embeddings()
        assert type(embedding).__name__ == "Gemma3TextScaledWordEmbedding"
        assert float(embedding.embed_scale) == pytest.approx(math.sqrt(32))
    ids = base_tokenizer.encode(ENGLISH)
    assert torch.equal(old_vocabulary_logits(base, ids, old_size), old_vocabulary_logits(grown_dir, ids, old_size))
    check_special_ids(grown_dir, base_tokenizer)

    # Data preparation with the grown tokenizer: pretraining text and SFT in the family's own template.
    pretrain_dir, sft_dir = tmp_path / "pretrain", tmp_path / "sft"
    pretrain_inputs = ",".join(str(first_rows(data_dir / "pretrain" / lang / "libreoffice_help.jsonl", 40, tmp_path / lang))
                               for lang in ("cs", "en") if (tmp_path / lang).mkdir() is None)
    # Gemma 3 included: its sliding-window layers get an additive float mask (training/setup.mask_dtype).
    packing = "doc_causal"
    manifest = prepare_pretrain(["--data_input_dirs", pretrain_inputs, "--tokenizer_dir", str(grown_dir),
                                 "--data_output_dirs", str(pretrain_dir), "--max_length", "64", "--packing", packing])
    assert manifest["records_kept"] == 80 and sum(manifest["part_rows"]) > 8
    sft_input = first_rows(data_dir / "sft" / "cs_translate.jsonl", 24, tmp_path)
    sft_manifest = prepare_sft(["--data_input_dirs", str(sft_input), "--tokenizer_dir", str(grown_dir),
                                "--data_output_dirs", str(sft_dir), "--max_length", "128", "--chat_template", template])
    assert sft_manifest["records_kept"] == 24
    check_sft_rows(sft_dir, grown_dir, plan.first_new_id)

    # Two gloo workers train the grown model; the final folder loads with no project code.
    save_dir = tmp_path / "run"
    run_training(2, base_args(grown_dir, pretrain_dir, save_dir, max_steps=3, save_interval=100, batch_size=2))
    records = step_records(save_dir / "log.jsonl")
    assert [r["step"] for r in records] == [1, 2, 3] and all(math.isfinite(r["loss"]) for r in records)
    final = save_dir / "final"
    assert len(AutoTokenizer.from_pretrained(final)) == report.target_vocab_size
    evaluation = perplexity(["--model_path", str(final), "--data", str(data_dir / "heldout" / "cs_fortunes.jsonl"),
                             "--max_documents", "4", "--max_length", "64", "--device", "cpu", "--no_progress"])
    result = next(iter(evaluation["files"].values()))
    assert math.isfinite(result["bits_per_byte"]) and result["bits_per_byte"] > 0


def check_sft_rows(sft_dir, tokenizer_dir, first_new_id):
    """Assistant tokens (and only they) carry labels; the Czech answers use new tokens."""
    from datasets import load_from_disk

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    parts = sorted((sft_dir / "arrow").iterdir())
    rows = load_from_disk(str(parts[0]))
    used_new_tokens = False
    for row in rows.select(range(min(5, len(rows)))):
        labelled = [token for token, label in zip(row["input_ids"], row["labels"]) if label != -100]
        assert 0 < len(labelled) < len(row["input_ids"])
        assert labelled == [label for label in row["labels"] if label != -100]
        used_new_tokens |= any(token >= first_new_id for token in labelled)
        assert tokenizer.decode(labelled, skip_special_tokens=True).strip()
    assert used_new_tokens


def test_qwen_checkpoint_padding_that_stays_padding_is_kept(base_dir, tmp_path):
    """A few new tokens on Qwen's 151,936-row checkpoint: they take ids 151669.., fresh rows; no row is dropped,
    and the checkpoint's padding rows past them are carried over unchanged."""
    from colossal_lang.model.init_model import main as init_model
    from colossal_lang.tokenizer.init_tokenizer import main as init_tokenizer

    base = build_tiny_model("qwen3", base_dir("qwen3"), tmp_path / "base")
    words = ["žluťoučký", "úpěl", "ďábelské", "příliš", "kůň", "čeština", "řeřicha", "šťastný"]
    pieces = tmp_path / "pieces.jsonl"
    pieces.write_text("".join(json.dumps({"piece": " " + word}, ensure_ascii=False) + "\n" for word in words), "utf-8")
    init_tokenizer(["--source_tokenizer_dir", str(base), "--target_tokenizer_dir", str(tmp_path / "tok"),
                    "--expand_tokens_file", str(pieces), "--no_protect"])
    report = init_model(["--source_model_and_tokenizer_path", str(base), "--target_tokenizer_path", str(tmp_path / "tok"),
                         "--target_model_path", str(tmp_path / "grown")])
    assert report.source_rows == 151936 and report.source_vocab_size == 151669
    assert report.new_rows == 151936 and 151669 < report.target_vocab_size < 151936
    source = AutoModelForCausalLM.from_pretrained(base).get_input_embeddings().weight
    grown = AutoModelForCausalLM.from_pretrained(tmp_path / "grown").get_input_embeddings().weight
    assert torch.equal(grown[:151669], source[:151669])
    assert torch.equal(grown[report.target_vocab_size:], source[report.target_vocab_size:])
    new_rows = grown[151669:report.target_vocab_size]
    assert not any(torch.equal(row, padding) for row, padding in zip(new_rows, source[151669:report.target_vocab_size]))
