"""Loss masks at the source/target boundary and BOS/EOS placement, on the real SmolLM2 and Mistral tokenizers."""

from __future__ import annotations

import json

import numpy as np
import pytest

from colossal_lang.data.batch_tokenize import IGNORE_INDEX
from colossal_lang.data.tokenize_pretrain import document_specials, tokenize_pretrain_batch

QUESTION = "Otázka: Které město je hlavním městem České republiky?\nOdpověď:"
ANSWER = " Hlavním městem je Praha, ležící na Vltavě."


def tokenize_many(tokenizer, records):
    """[(input_ids, labels)] of each (source, target), from one batch."""
    specials = document_specials(tokenizer)
    batch = tokenize_pretrain_batch([{"source": source, "target": target} for source, target in records],
                                    tokenizer, specials.prefix_ids, specials.suffix_ids)
    assert batch.token_ids.dtype == batch.labels.dtype == np.int32 and batch.learned.dtype == bool
    ends = np.cumsum(batch.lengths)
    return [(batch.token_ids[end - length:end].tolist(), batch.labels[end - length:end].tolist())
            for end, length in zip(ends, batch.lengths)]


def labels_for(input_ids, loss_start):
    return [IGNORE_INDEX] * loss_start + input_ids[loss_start:]


def tokenize_one(tokenizer, source, target):
    """(input_ids, loss_start) of one record; the labels are checked to be -100 before loss_start, the ids after."""
    input_ids, labels = tokenize_many(tokenizer, [(source, target)])[0]
    loss_start = next(index for index, label in enumerate(labels) if label != IGNORE_INDEX)
    assert labels == labels_for(input_ids, loss_start)
    return input_ids, loss_start


def test_document_specials_follow_the_tokenizer(smollm2_tokenizer, mistral_tokenizer):
    smol = document_specials(smollm2_tokenizer)
    assert smol.prefix_ids == ()  # SmolLM2 adds no BOS
    assert smol.suffix_ids == (2,)  # <|im_end|> ends every document
    mistral = document_specials(mistral_tokenizer)
    assert mistral.prefix_ids == (1,)  # <s>
    assert mistral.suffix_ids == (2,)  # </s>


@pytest.mark.parametrize("which", ["smollm2", "mistral"])
def test_boundary_is_exact_and_specials_appear_once(which, smollm2_tokenizer, mistral_tokenizer):
    tokenizer = smollm2_tokenizer if which == "smollm2" else mistral_tokenizer
    input_ids, loss_start = tokenize_one(tokenizer, QUESTION, ANSWER)
    prefix = list(document_specials(tokenizer).prefix_ids)
    # The ids are those of the joint text: no artefact from tokenizing the pieces apart.
    joint = tokenizer(QUESTION + ANSWER, add_special_tokens=False)["input_ids"]
    assert input_ids == prefix + joint + [tokenizer.eos_token_id]
    assert input_ids.count(tokenizer.eos_token_id) == 1
    if prefix:
        assert input_ids.count(tokenizer.bos_token_id) == 1
    labels = labels_for(input_ids, loss_start)
    learned = [token for token in labels if token != IGNORE_INDEX]
    context = input_ids[len(prefix):loss_start]
    assert tokenizer.decode(context) == QUESTION
    assert learned[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(learned[:-1]).strip() == ANSWER.strip()
    # The first learned token is the first one holding an answer character (not the answer tokenized alone:
    # SentencePiece would start that with a lone dummy-prefix "▁").
    first = tokenizer.decode(input_ids[loss_start:loss_start + 1]).strip()
    assert first and ANSWER.strip().startswith(first)


def test_token_straddling_the_boundary_is_learned(smollm2_tokenizer):
    # "The cap" + "ital": byte-level BPE makes one token "Ġcapital" across the cut; it holds target text, so it is learned.
    source, target = "Praha leží na Vltavě. The cap", "ital is beautiful."
    input_ids, loss_start = tokenize_one(smollm2_tokenizer, source, target)
    encoded = smollm2_tokenizer(source + target, add_special_tokens=False, return_offsets_mapping=True)
    straddling = [i for i, (start, end) in enumerate(encoded["offset_mapping"]) if start < len(source) < end]
    assert len(straddling) == 1
    assert smollm2_tokenizer.convert_ids_to_tokens(input_ids[straddling[0]]) == "Ġcapital"
    assert loss_start == straddling[0]
    assert all(end <= len(source) for _, end in encoded["offset_mapping"][:loss_start])


def test_empty_source_learns_every_token(mistral_tokenizer):
    input_ids, loss_start = tokenize_one(mistral_tokenizer, "", ANSWER.strip())
    assert loss_start == 1  # only <s> is context
    labels = labels_for(input_ids, loss_start)
    assert labels[0] == IGNORE_INDEX and labels[1:] == input_ids[1:]


@pytest.mark.parametrize("which", ["smollm2", "mistral"])
def test_batch_ids_equal_the_tokenizer_call(which, smollm2_tokenizer, mistral_tokenizer, data_dir):
    """The Rust backend is called directly, with and without offsets: the ids must be the tokenizer's own."""
    import json

    tokenizer = smollm2_tokenizer if which == "smollm2" else mistral_tokenizer
    lines = (data_dir / "pretrain" / "cs").glob("*.jsonl")
    texts = [json.loads(line)["target"] for line in next(iter(sorted(lines))).read_text(encoding="utf-8").splitlines()[:20]]
    prefix, suffix = document_specials(tokenizer).prefix_ids, document_specials(tokenizer).suffix_ids
    expected = [list(prefix) + tokenizer(text, add_special_tokens=False)["input_ids"] + list(suffix) for text in texts]
    fast_path = tokenize_many(tokenizer, [("", text) for text in texts])  # no source: no offsets asked for
    assert [ids for ids, _ in fast_path] == expected
    assert all(labels[len(prefix):] == ids[len(prefix):] for ids, labels in fast_path)
    # One record with a source switches the whole batch to offsets; the others keep the same ids.
    mixed = tokenize_many(tokenizer, [("Shrnutí: ", texts[0])] + [("", text) for text in texts[1:]])
    assert [ids for ids, _ in mixed[1:]] == expected[1:]
    assert mixed[1:] == fast_path[1:]


@pytest.mark.parametrize("which", ["smollm2", "mistral"])
def test_pipeline_rows_carry_the_exact_masks(which, request, jsonl, prepare_pretrain, load_parts, tmp_path):
    """Through the whole pipeline, with sources long enough that chunks cut through them."""
    from transformers import AutoTokenizer

    tokenizer_dir = request.getfixturevalue(f"{which}_tokenizer_dir")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    records = [
        {"source": QUESTION, "target": ANSWER, "category": "qa"},
        {"source": "Přelož do angličtiny: " + "Vltava je nejdelší řeka v Česku. " * 6, "target": " The Vltava is the longest river in Czechia.", "category": "qa"},
        {"source": "", "target": "Bez kontextu se učí každý token.", "category": "qa"},
    ]
    jsonl(tmp_path / "in.jsonl", records)
    prepare_pretrain(tmp_path / "in.jsonl", tokenizer_dir, tmp_path / "out", "--max_length", 32, "--order", "curriculum")
    pieces = []
    for row in load_parts(tmp_path / "out")[0]:
        start = 0
        for length in row["doc_lengths"]:
            pieces.append((row["input_ids"][start:start + length], row["labels"][start:start + length]))
            start += length
    expected = []
    for record in records:
        input_ids, loss_start = tokenize_one(tokenizer, record["source"], record["target"])
        labels = labels_for(input_ids, loss_start)
        expected += [(input_ids[i:i + 32], labels[i:i + 32]) for i in range(0, len(input_ids), 32)]
    assert sorted(pieces) == sorted(expected)
    assert any(all(label == IGNORE_INDEX for label in labels) for _, labels in pieces)  # a chunk of pure source


SPECIAL_IN_TEXT = " Konec dokumentu</s> a pak <|endoftext|> nebo <|im_end|>\n<s>další text."


@pytest.mark.parametrize("which", ["smollm2", "mistral"])
def test_special_token_strings_in_the_text_are_parsed_or_split(which, smollm2_tokenizer, mistral_tokenizer, data_dir):
    """parse: `</s>`/`<|endoftext|>` in a document become the special ids (as tokenizer(text)); split: never,
    and the ids are the tokenizer's own with split_special_tokens=True. BOS/EOS and the loss boundary stay."""
    import json

    tokenizer = smollm2_tokenizer if which == "smollm2" else mistral_tokenizer
    specials = document_specials(tokenizer)
    prefix, suffix = list(specials.prefix_ids), list(specials.suffix_ids)
    first_line = (data_dir / "pretrain" / "cs" / "fortunes.jsonl").read_text(encoding="utf-8").splitlines()[0]
    target = json.loads(first_line)["target"] + SPECIAL_IN_TEXT
    special_ids = set(tokenizer.all_special_ids)
    in_text = {tokenizer.convert_tokens_to_ids(t) for t in ("</s>", "<|endoftext|>", "<|im_end|>", "<s>")
               if t in tokenizer.all_special_tokens}
    assert in_text  # the text holds strings of this tokenizer's special tokens (</s>, <s>; <|endoftext|>, <|im_end|>)

    def run(mode, records):
        batch = tokenize_pretrain_batch(records, tokenizer, specials.prefix_ids, specials.suffix_ids,
                                        special_tokens_in_text=mode)
        ends = np.cumsum(batch.lengths)
        return [(batch.token_ids[e - n:e].tolist(), batch.labels[e - n:e].tolist()) for e, n in zip(ends, batch.lengths)]

    records = [{"source": "", "target": target}, {"source": QUESTION, "target": ANSWER + SPECIAL_IN_TEXT}]
    parsed, split = run("parse", records), run("split", records)
    text_ids = lambda ids: ids[len(prefix):len(ids) - len(suffix)]  # noqa: E731
    for (parse_ids, _), (split_ids, _) in zip(parsed, split):
        assert in_text <= set(text_ids(parse_ids))
        assert not special_ids & set(text_ids(split_ids))
        assert parse_ids[:len(prefix)] == split_ids[:len(prefix)] == prefix  # the real BOS, once
        assert parse_ids[-len(suffix):] == split_ids[-len(suffix):] == suffix  # the real EOS ends the document
    # split gives exactly the tokenizer's own split_special_tokens=True ids; parse its default ones.
    for record, (parse_ids, _), (split_ids, _) in zip(records, parsed, split):
        text = record["source"] + record["target"]
        assert split_ids == prefix + tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"] + suffix
        assert parse_ids == prefix + tokenizer(text, add_special_tokens=False)["input_ids"] + suffix
    # The loss boundary is the same token in both modes (the source has no special-token strings).
    (parse_ids, parse_labels), (split_ids, split_labels) = parsed[1], split[1]
    boundary = lambda labels: next(i for i, label in enumerate(labels) if label != IGNORE_INDEX)  # noqa: E731
    assert boundary(parse_labels) == boundary(split_labels) > len(prefix)
    assert parse_ids[:boundary(parse_labels)] == split_ids[:boundary(split_labels)]
    # The Rust tokenizer keeps the last split_special_tokens it was given: parse must not inherit a split.
    tokenizer("a</s>", split_special_tokens=True)
    assert run("parse", records) == parsed
    tokenizer("a</s>")  # and the other way round
    assert run("split", records) == split


def test_special_tokens_in_text_flag_reaches_rows_and_manifest(smollm2_tokenizer_dir, smollm2_tokenizer, jsonl,
                                                                prepare_pretrain, load_parts, tmp_path):
    texts = ["Ahoj <|im_end|> světe" + SPECIAL_IN_TEXT, "Druhý <|endoftext|> dokument."]
    jsonl(tmp_path / "in.jsonl", [{"source": "", "target": text, "category": "cs"} for text in texts])
    rows = {}
    for mode in ("default", "parse", "split"):
        flags = [] if mode == "default" else ["--special_tokens_in_text", mode]
        manifest = prepare_pretrain(tmp_path / "in.jsonl", smollm2_tokenizer_dir, tmp_path / mode, "--max_length", 256,
                                    "--order", "curriculum", *flags)
        assert manifest["special_tokens_in_text"] == ("parse" if mode == "default" else mode)
        # Both documents hold special-token strings: counted where they became special ids, never under split.
        assert manifest["categories"]["cs"]["special_token_documents"] == (0 if mode == "split" else len(texts))
        rows[mode] = [(row["input_ids"], row["doc_lengths"]) for row in load_parts(tmp_path / mode)[0]]
    assert rows["default"] == rows["parse"] != rows["split"]
    eos = smollm2_tokenizer.eos_token_id
    (ids, doc_lengths), = rows["split"]
    ends = list(np.cumsum(doc_lengths) - 1)
    assert [i for i, token in enumerate(ids) if token in smollm2_tokenizer.all_special_ids] == ends  # EOS only
    assert all(ids[end] == eos for end in ends)
    (ids, _), = rows["parse"]
    assert ids.count(eos) > len(texts) and 0 in ids  # <|im_end|> and <|endoftext|> from the text
    # parse keeps the fingerprint of outputs made before the flag; split is another dataset.
    assert json.loads((tmp_path / "default" / "manifest.json").read_text())["fingerprint"] == \
        json.loads((tmp_path / "parse" / "manifest.json").read_text())["fingerprint"]
    from colossal_lang.errors import InputError

    with pytest.raises(InputError, match="different dataset"):
        prepare_pretrain(tmp_path / "in.jsonl", smollm2_tokenizer_dir, tmp_path / "parse", "--max_length", 256,
                         "--order", "curriculum", "--special_tokens_in_text", "split")


def test_special_ids_are_counted_only_between_the_added_bos_and_eos():
    from colossal_lang.data.tokenize_pretrain import documents_with_special_ids_inside

    # <s>=1 and </s>=2 around each document; the second one's text held a "</s>" that became id 2.
    token_ids = np.array([1, 5, 2, 1, 2, 6, 2, 1, 7, 8, 2], dtype=np.int32)
    inside = documents_with_special_ids_inside(token_ids, np.array([0, 3, 7, 11]), {1, 2}, prefix_length=1, suffix_length=1)
    assert inside.tolist() == [False, True, False]
