"""train.py features in single-process runs (all run in one interpreter, one launch): weights-only loading,
freeze modes, per-token loss normalisation, NaN guard, KL to the reference, spike rollback, LoRA."""

from __future__ import annotations

import json

import pytest
import torch

from tests.training.conftest import base_args, read_log, run_many, step_records


@pytest.fixture(scope="module")
def small_vocabulary_model(tiny_model_dir, tmp_path_factory):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    model.resize_token_embeddings(1000)
    out = tmp_path_factory.mktemp("small-vocabulary")
    model.save_pretrained(out)
    return out


@pytest.fixture(scope="module")
def runs(uninterrupted, tiny_model_dir, small_vocabulary_model, packed_dataset, ragged_dataset, tmp_path_factory):
    root = tmp_path_factory.mktemp("features")
    model, data = tiny_model_dir, packed_dataset
    plan = {
        "wrong_tokenizer": base_args(small_vocabulary_model, data, root / "wrong_tokenizer", tokenizer_dir=model),
        "weights_only": base_args(model, data, root / "weights_only", max_steps=1, lr=1e-9,
                                  load_checkpoint=uninterrupted / "epoch-0_step-8" / "modeling", use_neft=False),
        "freeze_non_embeds": base_args(model, data, root / "freeze_non_embeds", max_steps=2, freeze_non_embeds_params=None,
                                       tensorboard_dir=root / "tensorboard", config_file=root / "effective.json"),
        "new_rows": base_args(model, data, root / "new_rows", max_steps=2, train_new_rows_only=None, new_token_start=1000),
        "batch2_accum1": base_args(model, ragged_dataset, root / "batch2_accum1", max_steps=3, batch_size=2,
                                   accumulation_steps=1, use_neft=False, save_interval=0),
        "batch1_accum2": base_args(model, ragged_dataset, root / "batch1_accum2", max_steps=3, batch_size=1,
                                   accumulation_steps=2, use_neft=False, save_interval=0),
        "nan_and_kl": (base_args(model, data, root / "nan_and_kl", max_steps=4, kl_coef=1.0, use_neft=False,
                                 save_interval=0), "nan_loss@2"),
        "rollback": base_args(model, data, root / "rollback", max_steps=6, spike_factor=0.5, spike_min_history=2,
                              spike_rollback_after=2, spike_lr_factor=0.5, lr_schedule="constant", warmup_steps=0,
                              keep_last=2),
        "bf16_lionw_wsd": base_args(model, data, root / "bf16_lionw_wsd", max_steps=5, mixed_precision="bf16",
                                    optimizer="lionw", lr=1e-2, weight_decay=0.0, lr_schedule="wsd", decay_ratio=0.4,
                                    warmup_steps=1, min_lr_ratio=0.1, save_interval=0),
        "each_epoch": base_args(model, ragged_dataset, root / "each_epoch", max_steps=False, num_epochs=2, batch_size=8,
                                save_interval=0, save_each_epoch=None, use_neft=False),
        "lora": base_args(model, data, root / "lora", max_steps=2, lora_rank=4, use_neft=False),
        "lora_embeddings": base_args(model, data, root / "lora_embeddings", max_steps=2, lora_rank=4, use_neft=False,
                                     new_token_start=1000, save_interval=0),  # vocabulary grew: embeddings train
        "lora_embeddings_neft": base_args(model, data, root / "lora_embeddings_neft", max_steps=1, lora_rank=4,
                                          new_token_start=1000, neft_alpha=50.0, save_interval=0),
    }
    result = run_many(list(plan.values()))
    folders = {name: root / name for name in plan}
    folders["stdout"] = result.stdout
    folders["root"] = root
    return folders


def state(folder) -> dict:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(folder).state_dict()


def test_weights_only_loading_starts_from_the_checkpoint_weights(runs, uninterrupted):
    """--load_checkpoint .../modeling: the first loss is the checkpoint model's loss on that batch; step 0."""
    from transformers import AutoModelForCausalLM

    from colossal_lang.data.loader import PackedCollator, load_prepared_dataset
    from colossal_lang.training.losses import token_loss_sums

    record = step_records(runs["weights_only"] / "log.jsonl")[0]
    assert record["step"] == 1  # a new stage: step, data position and optimizer start afresh
    config = json.loads((runs["weights_only"] / "epoch-0_step-1" / "running_states.json").read_text())["config"]
    rows = load_prepared_dataset(config["dataset"]).dataset
    batch = PackedCollator(2)([rows[i] for i in record["samples"]])
    model = AutoModelForCausalLM.from_pretrained(uninterrupted / "final").eval()
    with torch.no_grad():
        sums, counts = token_loss_sums(model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                            position_ids=batch["position_ids"]).logits, batch["labels"])
    assert record["loss"] == pytest.approx((sums.sum() / counts.sum()).item(), rel=1e-5)


def test_freeze_non_embeds_changes_only_the_embeddings(runs, tiny_model_dir):
    before, after = state(tiny_model_dir), state(runs["freeze_non_embeds"] / "final")
    for name in before:
        changed = not torch.equal(before[name], after[name])
        assert changed == (name in ("model.embed_tokens.weight", "lm_head.weight")), name


def test_train_new_rows_only_leaves_old_rows_bit_for_bit(runs, tiny_model_dir):
    before, after = state(tiny_model_dir), state(runs["new_rows"] / "final")
    embeddings_before, embeddings_after = before["model.embed_tokens.weight"], after["model.embed_tokens.weight"]
    assert torch.equal(embeddings_before[:1000], embeddings_after[:1000])  # weight decay 0.1 did not touch them
    moved = (embeddings_before[1000:] != embeddings_after[1000:]).any(dim=1)
    assert moved.all()  # every new row moved: gradient where it appeared, decoupled weight decay everywhere
    for name in before:
        if name not in ("model.embed_tokens.weight", "lm_head.weight"):
            assert torch.equal(before[name], after[name]), name


def test_loss_is_normalised_per_token_across_micro_batches(runs):
    """Batch 2 in one micro-batch or two micro-batches of 1 (different token counts): same losses, same model."""
    one = step_records(runs["batch2_accum1"] / "log.jsonl")
    two = step_records(runs["batch1_accum2"] / "log.jsonl")
    assert [r["samples"] for r in one] == [r["samples"] for r in two]
    for a, b in zip(one, two):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-5)
        assert a["grad_norm"] == pytest.approx(b["grad_norm"], rel=1e-4)
    assert one[0]["loss"] != one[-1]["loss"]


def test_nan_loss_is_skipped_and_logged_and_kl_is_zero_against_itself(runs):
    log = read_log(runs["nan_and_kl"] / "log.jsonl")
    events = [r for r in log if r.get("event")]
    assert [e["event"] for e in events] == ["not_finite"] and events[0]["step"] == 2
    records = step_records(runs["nan_and_kl"] / "log.jsonl")
    assert records[0]["kl"] == 0.0  # step 1: the model still equals the reference
    assert records[1]["skipped"] and not any(r["skipped"] for r in records[2:])
    assert all(r["loss"] == r["loss"] for r in records[2:])  # finite: the NaN never reached the weights
    assert records[2]["kl"] > 0.0
    assert records[2]["loss"] < records[0]["loss"]


def test_repeated_spikes_roll_back_and_lower_the_lr(runs):
    log = read_log(runs["rollback"] / "log.jsonl")
    kinds = [(r.get("event"), r["step"]) for r in log if r.get("event")]
    assert kinds[:3] == [("spike", 3), ("spike", 4), ("rollback", 4)]
    records = {r["step"]: r for r in step_records(runs["rollback"] / "log.jsonl")}
    assert records[4]["lr"] == pytest.approx(1e-2)
    assert records[5]["lr"] == pytest.approx(0.5e-2)
    # --keep_last 2: only the two newest complete checkpoints remain.
    assert sorted(p.name for p in runs["rollback"].glob("epoch-*")) == ["epoch-0_step-4", "epoch-0_step-6"]


def test_bf16_autocast_with_lionw_and_the_wsd_schedule(runs, tiny_model_dir):
    """CPU bf16 (fp32 master weights + autocast), LionW, warm-up-stable-decay: LRs per step as scheduled."""
    records = step_records(runs["bf16_lionw_wsd"] / "log.jsonl")
    assert [r["lr"] for r in records] == pytest.approx([1e-2, 1e-2, 1e-2, 0.55e-2, 0.1e-2])
    assert all(r["loss"] == r["loss"] and not r["skipped"] for r in records)
    before, after = state(tiny_model_dir), state(runs["bf16_lionw_wsd"] / "final")
    # Lion moves every weight with a non-zero momentum by exactly ±lr per step (no weight decay here):
    # after 5 steps the largest move of a dense matrix is the sum of the LRs.
    moved = (after["model.layers.0.mlp.down_proj.weight"] - before["model.layers.0.mlp.down_proj.weight"]).abs().max()
    assert moved.item() == pytest.approx(sum(r["lr"] for r in records), rel=1e-4)
    final = runs["bf16_lionw_wsd"] / "final" / "config.json"
    assert json.loads(final.read_text())["torch_dtype"] == "float32"  # master weights stay fp32


def test_lora_trains_adapters_and_merges_into_the_final_model(runs, tiny_model_dir):
    before, after = state(tiny_model_dir), state(runs["lora"] / "final")
    assert set(before) == set(after)
    assert torch.equal(before["model.embed_tokens.weight"], after["model.embed_tokens.weight"])
    assert not torch.equal(before["model.layers.0.self_attn.q_proj.weight"], after["model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(before["model.norm.weight"], after["model.norm.weight"])


def test_lora_with_embeddings_on_a_tied_model_saves_what_it_trained(runs, tiny_model_dir):
    """modules_to_save trains separate copies of a tied model's embeddings and head: the final folder must keep
    the trained head (untied), not let from_pretrained tie it back to the embeddings."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    final = runs["lora_embeddings"] / "final"
    model = AutoModelForCausalLM.from_pretrained(final)
    saved = load_file(final / "model.safetensors")
    assert model.config.tie_word_embeddings is False
    assert torch.equal(model.lm_head.weight, saved["lm_head.weight"])
    assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    before = state(tiny_model_dir)
    assert not torch.equal(before["model.embed_tokens.weight"], model.model.embed_tokens.weight)
    assert not torch.equal(before["lm_head.weight"], model.lm_head.weight)


def test_neftune_noise_reaches_the_embeddings_lora_trains(runs):
    """NEFTune is hooked after boosting onto the embedding the boosted model runs (under LoRA's modules_to_save, the
    trained copy): same seed, same rows, noise on changes the first loss."""
    plain = step_records(runs["lora_embeddings"] / "log.jsonl")[0]
    noisy = step_records(runs["lora_embeddings_neft"] / "log.jsonl")[0]
    assert plain["samples"] == noisy["samples"]
    assert noisy["loss"] != pytest.approx(plain["loss"], rel=1e-6)


def test_save_each_epoch_saves_when_an_epoch_ends(runs):
    """Colossal-LLaMA saves at every epoch's end (unless --skip_save_each_epoch): 40 rows, 8 per step, 2 epochs."""
    reasons = {p.name: json.loads((p / "running_states.json").read_text())["reason"]
               for p in runs["each_epoch"].glob("epoch-*")}
    assert reasons == {"epoch-1_step-5": "epoch", "epoch-1_step-10": "end"}  # the last epoch's end is the run's
    states = json.loads((runs["each_epoch"] / "epoch-1_step-5" / "running_states.json").read_text())
    assert states["consumed_samples"] == 0  # the next epoch starts afresh
    assert [r["epoch"] for r in step_records(runs["each_epoch"] / "log.jsonl")] == [0] * 5 + [1] * 5


def test_data_from_another_tokenizer_is_refused(runs):
    assert "INPUT_ERROR 0: the data hold token ids at or above the model's 1000 embedding rows" in runs["stdout"]


def test_tensorboard_scalars_and_effective_config(runs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(runs["root"] / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "train/tokens",
                "tokens_seen/cs", "tokens_seen/en", "memory/peak_rss_gib"):
        assert tag in tags, tag
    # A per-category loss for each category the two steps trained on (bucket 0 first: which ones depends on the data).
    logged = {key for record in step_records(runs["freeze_non_embeds"] / "log.jsonl") for key in record if key.startswith("loss/")}
    assert logged and {tag for tag in tags if tag.startswith("loss/")} == logged
    assert [e.step for e in events.Scalars("train/loss")] == [1, 2]
    config = json.loads((runs["root"] / "effective.json").read_text())
    assert config["freeze_non_embeds_params"] is True and config["plugin"] == "ddp"
