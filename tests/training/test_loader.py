"""The training data loader: loading prepared folders, the collator's masks and positions, the sampler's resume."""

from __future__ import annotations

import json

import pytest
import torch

from colossal_lang.data.loader import PackedCollator, ResumableSampler, doc_causal_mask, load_prepared_dataset
from colossal_lang.errors import InputError


def row(ids, labels=None, docs=None, category="cs"):
    return {"input_ids": ids, "labels": labels if labels is not None else list(ids), "doc_lengths": docs or [len(ids)],
            "category": category}


def test_collator_pads_with_pad_id_and_ignored_labels_and_restarts_positions():
    rows = [row([5, 6, 7, 8, 9], docs=[2, 3]), row([11, 12, 13], labels=[-100, 12, 13])]
    batch = PackedCollator(pad_token_id=2, attention="causal")(rows)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8, 9], [11, 12, 13, 2, 2]]
    assert batch["labels"].tolist() == [[5, 6, 7, 8, 9], [-100, 12, 13, -100, -100]]
    assert batch["position_ids"].tolist() == [[0, 1, 0, 1, 2], [0, 1, 2, 0, 1]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1], [1, 1, 1, 0, 0]]
    assert batch["categories"] == ["cs", "cs"]


def test_doc_causal_mask_keeps_attention_inside_each_document():
    batch = PackedCollator(pad_token_id=0, attention="doc_causal", mask_dtype=torch.bool)([row([1, 2, 3, 4, 5], docs=[2, 3]),
                                                                                         row([7, 8])])
    allowed = batch["attention_mask"][0, 0]
    expected = torch.tensor([[1, 0, 0, 0, 0],
                             [1, 1, 0, 0, 0],
                             [0, 0, 1, 0, 0],
                             [0, 0, 1, 1, 0],
                             [0, 0, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(allowed, expected)
    # Padding is a document of its own: no query row is fully masked (no NaN in softmax).
    assert batch["attention_mask"][1, 0].any(dim=-1).all()
    # The first token of the second document is not predicted from the first document.
    assert batch["labels"][0].tolist() == [1, 2, -100, 4, 5]


def test_additive_mask_matches_the_boolean_one():
    documents = torch.tensor([[0, 0, 1, 1, 1]])
    additive = doc_causal_mask(documents, torch.float32)
    allowed = doc_causal_mask(documents, torch.bool)
    assert torch.equal(additive == 0, allowed)
    assert additive.min() == torch.finfo(torch.float32).min


@pytest.mark.parametrize("mask_dtype", [torch.bool, torch.float32])  # bool: what training feeds SDPA
def test_doc_causal_attention_equals_separate_documents(tiny_model_dir, mask_dtype):
    """Two packed documents give the same logits as each document run alone (SDPA, 4D mask, position ids)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, attn_implementation="sdpa").eval()
    first, second = [10, 11, 12, 13], [20, 21, 22]
    batch = PackedCollator(pad_token_id=2, attention="doc_causal", mask_dtype=mask_dtype)([row(first + second, docs=[4, 3])])
    with torch.no_grad():
        packed = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                       position_ids=batch["position_ids"]).logits[0]
        alone = torch.cat([model(input_ids=torch.tensor([doc])).logits[0] for doc in (first, second)])
    assert torch.allclose(packed, alone, atol=1e-5)


def test_collator_position_ids_only_mode_has_no_mask():
    batch = PackedCollator(pad_token_id=0, attention="position_ids_only")([row([1, 2, 3], docs=[1, 2]), row([4])])
    assert "attention_mask" not in batch
    assert batch["position_ids"].tolist() == [[0, 0, 1], [0, 0, 1]]


def test_collator_rejects_inconsistent_rows():
    with pytest.raises(ValueError, match="doc_lengths"):
        PackedCollator(0)([row([1, 2, 3], docs=[1, 1])])


def test_sampler_resumes_exactly_and_across_worker_counts():
    size, seed = 53, 3
    two = [ResumableSampler(size, 2, rank, seed, global_batch_size=8) for rank in range(2)]
    full = [list(s) for s in two]
    order = two[0].order(0)
    # Global position p goes to rank p % 2; the epoch is cut to whole steps (48 of 53).
    assert full[0] == order[0:48:2] and full[1] == order[1:48:2]
    # Resume at 16 consumed samples with the same workers: the same continuation.
    for rank, sampler in enumerate(two):
        sampler.set_position(0, 16)
        assert list(sampler) == full[rank][8:]
    # Resume with 1 worker: it reads the remaining global positions, in order.
    one = ResumableSampler(size, 1, 0, seed, global_batch_size=4)
    one.set_position(0, 16)
    assert list(one) == order[16:52]
    # Next epoch: another permutation; a position past the end of an epoch starts the next one.
    one.set_position(0, 52)
    assert (one.epoch, one.start) == (1, 0) and list(one) != order[:52]
    assert list(one) == ResumableSampler(size, 1, 0, seed, 4).order(1)[:52]


def test_resume_between_steps_gives_every_rank_the_same_number_of_micro_batches():
    """3 workers (global batch 3) saved at 9 samples; 2 workers of batch 2 (global batch 4) resume there."""
    samplers = [ResumableSampler(20, 2, rank, 0, global_batch_size=4) for rank in range(2)]
    for sampler in samplers:
        sampler.set_position(0, 9)
    shares = [list(s) for s in samplers]
    # Two whole global steps fit in positions 9..19: 4 rows each, none left over for only one rank.
    assert [len(share) for share in shares] == [len(s) for s in samplers] == [4, 4]
    assert sorted(shares[0] + shares[1]) == sorted(samplers[0].order(0)[9:17])
    samplers[0].set_position(0, 17)  # 3 rows left: not a whole global batch
    assert (samplers[0].epoch, samplers[0].start) == (1, 0)


def test_load_prepared_dataset_concatenates_buckets_and_checks_manifests(packed_dataset, tmp_path):
    from datasets import load_from_disk

    prepared = load_prepared_dataset([str(packed_dataset)])
    parts = [load_from_disk(str(p)) for p in sorted((packed_dataset / "arrow").glob("part-*"))]
    assert len(parts) == 2 and len(prepared.dataset) == sum(len(p) for p in parts)
    assert prepared.dataset[len(parts[0])]["input_ids"] == parts[1][0]["input_ids"]  # bucket order kept
    assert prepared.categories == ["cs", "en"] and prepared.packing == "doc_causal"
    # A bare part folder works too.
    assert len(load_prepared_dataset([str(packed_dataset / "arrow" / "part-00001")]).dataset) == len(parts[1])

    import shutil

    other = tmp_path / "other"
    shutil.copytree(packed_dataset, other)
    # Several folders: bucket k is part k of each, so separately prepared sets are mixed, not read one after
    # the other; bare part folders (Colossal-LLaMA's way) make one bucket, shuffled together.
    both = load_prepared_dataset([str(packed_dataset), str(other)])
    assert both.bucket_sizes == [2 * len(parts[0]), 2 * len(parts[1])]
    assert both.dataset[len(parts[0])]["input_ids"] == parts[0][0]["input_ids"]  # other's part 0, in bucket 0
    bare = load_prepared_dataset([str(packed_dataset / "arrow" / "part-00000"), str(packed_dataset / "arrow" / "part-00001")])
    assert bare.bucket_sizes == [len(parts[0]) + len(parts[1])]
    manifest = json.loads((other / "manifest.json").read_text())
    manifest["max_length"] = 128
    (other / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(InputError, match="max_length"):
        load_prepared_dataset([str(packed_dataset), str(other)])
    with pytest.raises(InputError, match="not a prepared dataset"):
        load_prepared_dataset([str(tmp_path)])


def test_a_curriculum_dataset_is_trained_in_its_stored_order(packed_dataset, tmp_path):
    """--order curriculum at preparation: the training sampler keeps the rows' order instead of shuffling."""
    import shutil

    from colossal_lang.training.config import DataConfig
    from colossal_lang.training.builders import build_loader

    curriculum = tmp_path / "curriculum"
    shutil.copytree(packed_dataset, curriculum)
    manifest = json.loads((curriculum / "manifest.json").read_text())
    manifest["order"] = "curriculum"
    (curriculum / "manifest.json").write_text(json.dumps(manifest))
    orders = {}
    for name, folder in (("shuffle", packed_dataset), ("curriculum", curriculum)):
        prepared = load_prepared_dataset([str(folder)])
        _, sampler = build_loader(DataConfig(batch_size=2), prepared, pad_id=0, attention="doc_causal", multiple=1,
                                  dp_size=1, dp_rank=0, seed=1)
        orders[name] = list(sampler)
    assert orders["curriculum"] == list(range(len(orders["curriculum"])))
    assert orders["shuffle"] != orders["curriculum"]
    # A curriculum and a shuffled dataset in one run: refused, rather than leaving both unshuffled.
    with pytest.raises(InputError, match=r"disagree on order .*curriculum.*shuffle"):
        load_prepared_dataset([str(curriculum), str(packed_dataset)])


def rows_read(prepared, dp_size: int, consumed: int = 0, steps: int = None) -> list:
    """Dataset rows the `dp_size` ranks' real loaders feed from `consumed` on, step by step (global order)."""
    from colossal_lang.training.config import DataConfig
    from colossal_lang.training.builders import build_loader

    loaders = []
    for rank in range(dp_size):
        loader, sampler = build_loader(DataConfig(batch_size=1), prepared, pad_id=0, attention="doc_causal", multiple=1,
                                       dp_size=dp_size, dp_rank=rank, seed=1)
        sampler.set_position(0, consumed)
        loaders.append(loader)
    rows = []
    for step, batches in enumerate(zip(*loaders)):
        if steps is not None and step == steps:
            break
        rows += [index for batch in batches for index in batch["indices"]]
    return rows


def test_resume_with_more_workers_reads_every_whole_global_batch_left(ragged_dataset):
    """2 workers save after 10 rows of 40; 3 workers resume: rows 10..39 are 10 whole global batches of 3.

    The epoch used to end at 3 × (40 // 3) = 39 counted from 0, so the resumed run stopped at 37 and skipped
    3 rows the interrupted run would have trained on.
    """
    prepared = load_prepared_dataset([str(ragged_dataset)])
    assert len(prepared.dataset) == 40
    uninterrupted = rows_read(prepared, 2)
    assert sorted(uninterrupted) == list(range(40))  # 40 = 20 whole steps of 2: nothing dropped
    resumed = rows_read(prepared, 2, steps=5) + rows_read(prepared, 3, consumed=10)
    assert resumed == uninterrupted  # the same rows, in the same order, none skipped or repeated
    sampler = ResumableSampler(40, 3, 0, 1, global_batch_size=3)
    sampler.set_position(0, 10)
    assert (sampler.end, sampler.dropped, len(sampler)) == (40, 0, 10)
    sampler.set_position(0, 0)  # from the start of an epoch, the last row is left over and reported
    assert (sampler.end, sampler.dropped) == (39, 1)


def test_sampler_keeps_the_bucket_order_and_shuffles_inside_each_bucket(packed_dataset):
    """Buckets (arrow parts) are trained in order: epoch after epoch, bucket 0's rows all come before bucket 1's."""
    from datasets import load_from_disk

    prepared = load_prepared_dataset([str(packed_dataset)])
    sizes = [len(load_from_disk(str(p))) for p in sorted((packed_dataset / "arrow").glob("part-*"))]
    assert prepared.bucket_sizes == sizes and len(sizes) == 2
    total, first = sum(sizes), sizes[0]
    sampler = ResumableSampler(total, 1, 0, 5, global_batch_size=1, bucket_sizes=prepared.bucket_sizes)
    orders = [sampler.order(epoch) for epoch in range(3)]
    for order in orders:
        assert sorted(order[:first]) == list(range(first)) and sorted(order[first:]) == list(range(first, total))
    assert orders[0] != orders[1] != orders[2] and orders[0] != orders[2]  # another shuffle each epoch
    assert orders[0][:first] != list(range(first))
    assert orders[0] == ResumableSampler(total, 1, 0, 5, 1, bucket_sizes=sizes).order(0)  # deterministic
    # One bucket: the same order as before buckets were known (checkpoints of one-part datasets resume alike).
    assert ResumableSampler(total, 1, 0, 5, 1, bucket_sizes=[total]).order(0) == torch.randperm(
        total, generator=torch.Generator().manual_seed(5)).tolist()
    # An empty bucket changes nothing but is allowed; sizes that do not add up are refused.
    with_empty = ResumableSampler(total, 1, 0, 5, 1, bucket_sizes=[first, 0, total - first]).order(0)
    assert sorted(with_empty[:first]) == list(range(first))
    with pytest.raises(ValueError, match="add up"):
        ResumableSampler(total, 1, 0, 5, 1, bucket_sizes=[first])


@pytest.mark.parametrize("new_world", [1, 3])
def test_resume_across_worker_counts_keeps_the_bucket_order(new_world):
    """Buckets of 7, 0 and 12 rows; 2 workers save mid-bucket 0, 1 or 3 workers resume across the boundary."""
    sizes, seed = [7, 0, 12], 11
    two = [ResumableSampler(19, 2, rank, seed, global_batch_size=2, bucket_sizes=sizes) for rank in range(2)]
    order = two[0].order(0)
    for sampler in two:
        sampler.set_position(0, 4)
    saved_run = [index for pair in zip(*map(list, two)) for index in pair]
    assert saved_run == order[4:18]  # 19 rows: whole steps of 2 end at 18
    resumed = [ResumableSampler(19, new_world, rank, seed, new_world, bucket_sizes=sizes) for rank in range(new_world)]
    for sampler in resumed:
        sampler.set_position(0, 4)
    read = [index for group in zip(*map(list, resumed)) for index in group]
    end = 4 + (19 - 4) // new_world * new_world
    assert read == order[4:end] and len(set(read)) == len(read)
    assert resumed[0].dropped == 19 - end
    assert set(order[:7]) == set(range(7))  # bucket 0 first


def test_a_checkpoint_from_before_buckets_finishes_its_epoch_in_its_own_order(packed_dataset):
    """A checkpoint whose sampler walked another bucket layout (here: none saved, one permutation of the whole dataset)
    resumed mid-epoch on a two-part dataset: the rest of that epoch is the rest of the saved order (not positions of
    the bucket order: rows read twice, others never); the next epoch goes by bucket. Data of another size is reported."""
    prepared = load_prepared_dataset([str(packed_dataset)])
    total, sizes, seed, consumed = len(prepared.dataset), prepared.bucket_sizes, 7, 8
    assert len(sizes) == 2
    legacy = {"epoch": 0, "consumed_samples": consumed, "seed": seed, "dataset_size": total, "global_batch_size": 4}
    saved_order = torch.randperm(total, generator=torch.Generator().manual_seed(seed)).tolist()  # the old sampler's
    end = consumed + (total - consumed) // 4 * 4
    samplers = [ResumableSampler(total, 2, rank, seed, 4, bucket_sizes=sizes) for rank in range(2)]
    for sampler in samplers:
        assert sampler.follow_saved_layout(legacy, 0, consumed) is None
        sampler.set_position(0, consumed)
    read = [index for pair in zip(*map(list, samplers)) for index in pair]
    assert read == saved_order[consumed:end]
    assert sorted(saved_order[:consumed] + read) == sorted(saved_order[:end])  # nothing twice
    samplers[0].set_position(1, 0)
    assert list(samplers[0]) == ResumableSampler(total, 2, 0, seed, 4, bucket_sizes=sizes).order(1)[0:samplers[0].samples_per_epoch:2]
    other = ResumableSampler(total, 1, 0, seed, 4, bucket_sizes=sizes)
    assert "may repeat or miss rows" in other.follow_saved_layout(dict(legacy, dataset_size=total + 5), 0, consumed)
    assert other.resumed_layout is None
    assert other.follow_saved_layout(dict(legacy, bucket_sizes=sizes), 0, consumed) is None  # same layout
    assert other.follow_saved_layout(legacy, 0, 0) is None and other.resumed_layout is None  # an epoch's start
