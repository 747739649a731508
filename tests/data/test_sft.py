"""SFT: labels cover exactly each assistant content and its end-of-turn token, for every template."""

from __future__ import annotations

import json

import pytest

from colossal_lang.errors import InputError

CONVERSATION = [
    {"role": "system", "content": "Jsi stručný pomocník, který odpovídá česky."},
    {"role": "user", "content": "Jaké je hlavní město České republiky?"},
    {"role": "assistant", "content": "Hlavním městem je Praha."},
    {"role": "user", "content": "A kterou řekou protéká?"},
    {"role": "assistant", "content": "Praha leží na Vltavě."},
    {"role": "user", "content": "Kolik má obyvatel?"},
    {"role": "assistant", "content": "Přibližně 1,3 milionu."},
]
# template → (tokenizer fixture, end-of-turn token)
TEMPLATES = {
    "tokenizer": ("smollm2_tokenizer_dir", "<|im_end|>"),
    "chatml": ("smollm2_tokenizer_dir", "<|im_end|>"),
    "llama2": ("mistral_tokenizer_dir", "</s>"),
    "llama3": ("llama3_tokens_tokenizer_dir", "<|eot_id|>"),
}


def _label_runs(labels):
    runs, current = [], []
    for label in labels + [-100]:
        if label == -100:
            if current:
                runs.append(current)
            current = []
        else:
            current.append(label)
    return runs


def _colossal_form(messages):
    return [{"from": "human" if m["role"] == "user" else "assistant", "content": m["content"]} for m in messages]


@pytest.mark.parametrize("template", sorted(TEMPLATES))
def test_labels_are_exactly_the_assistant_turns(template, request, data_dir, jsonl, prepare_sft, load_parts, tmp_path):
    from transformers import AutoTokenizer

    tokenizer_fixture, end_of_turn = TEMPLATES[template]
    tokenizer_dir = request.getfixturevalue(tokenizer_fixture)
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    translations = [json.loads(line) for line in (data_dir / "sft/cs_translate.jsonl").read_text(encoding="utf-8").splitlines()[:20]]
    jsonl(tmp_path / "in" / "chat.jsonl", [{"messages": CONVERSATION, "category": "chat"}])
    jsonl(tmp_path / "in" / "translate.jsonl", translations)
    manifest = prepare_sft(tmp_path / "in", tokenizer_dir, tmp_path / "out", "--max_length", 512, "--chat_template", template)
    assert manifest["kind"] == "sft" and manifest["categories"]["translation"]["documents"] == 20
    rows = [row for part in load_parts(tmp_path / "out") for row in part]
    eot_id = tokenizer.convert_tokens_to_ids(end_of_turn)
    checked = 0
    for row in rows:
        assert row["doc_lengths"] == [len(row["input_ids"])]  # unpacked: one conversation per row
        text = tokenizer.decode(row["input_ids"])
        if row["category"] == "chat":
            answers = [m["content"] for m in CONVERSATION if m["role"] == "assistant"]
            assert CONVERSATION[0]["content"] in text  # the system prompt is rendered
        else:
            record = next(r for r in translations if r["messages"][0]["content"] in text)
            answers = [record["messages"][1]["content"]]
        runs = _label_runs(row["labels"])
        assert len(runs) == len(answers)
        for run, answer in zip(runs, answers):
            assert run[-1] == eot_id
            assert tokenizer.decode(run[:-1]).strip() == answer
        learned = sum(len(run) for run in runs)
        assert learned == sum(1 for label in row["labels"] if label != -100)
        checked += 1
    assert checked == 21


def test_truncation_drops_whole_trailing_turns(smollm2_tokenizer_dir, smollm2_tokenizer, jsonl, prepare_sft, load_parts, tmp_path):
    jsonl(tmp_path / "in.jsonl", [{"messages": _colossal_form(CONVERSATION[1:])}])
    full = smollm2_tokenizer.apply_chat_template(CONVERSATION[1:], tokenize=True)
    two_turns = smollm2_tokenizer.apply_chat_template(CONVERSATION[1:5], tokenize=True)
    manifest = prepare_sft(tmp_path / "in.jsonl", smollm2_tokenizer_dir, tmp_path / "out", "--max_length", len(full) - 1)
    row = load_parts(tmp_path / "out")[0][0]
    assert row["input_ids"] == two_turns
    assert [smollm2_tokenizer.decode(run[:-1]) for run in _label_runs(row["labels"])] == [
        CONVERSATION[2]["content"], CONVERSATION[4]["content"]]
    assert manifest["categories"]["sft"]["truncated_documents"] == 1


def test_first_turn_longer_than_max_length_names_file_and_line(smollm2_tokenizer_dir, jsonl, prepare_sft, tmp_path):
    path = jsonl(tmp_path / "in.jsonl", [{"messages": _colossal_form(CONVERSATION[1:3])}, {"messages": _colossal_form(CONVERSATION[1:])}])
    with pytest.raises(InputError, match=r"in\.jsonl:1: first turn too long: \d+ tokens"):
        prepare_sft(path, smollm2_tokenizer_dir, tmp_path / "out", "--max_length", 40)


def test_packed_sft_keeps_conversations_apart(data_dir, smollm2_tokenizer_dir, smollm2_tokenizer, jsonl, prepare_sft,
                                              load_parts, tmp_path):
    lines = (data_dir / "sft/cs_translate.jsonl").read_text(encoding="utf-8").splitlines()[:60]
    jsonl(tmp_path / "in.jsonl", lines)
    manifest = prepare_sft(tmp_path / "in.jsonl", smollm2_tokenizer_dir, tmp_path / "out", "--max_length", 512,
                           "--packing", "doc_causal")
    rows = list(load_parts(tmp_path / "out")[0])
    assert manifest["packed"] and len(rows) < 60
    system_start = smollm2_tokenizer("<|im_start|>system")["input_ids"]
    documents = 0
    for row in rows:
        assert sum(row["doc_lengths"]) == len(row["input_ids"]) <= 512
        start = 0
        for length in row["doc_lengths"]:
            assert row["input_ids"][start:start + len(system_start)] == system_start
            assert row["labels"][start + length - 2] == 2  # <|im_end|> of the answer, then "\n" unlearned
            assert row["labels"][start + length - 1] == -100
            start += length
            documents += 1
    assert documents == 60


def test_colossal_llama_version_flag_picks_the_llama2_template(mistral_tokenizer_dir, jsonl, prepare_sft, tmp_path):
    jsonl(tmp_path / "in.jsonl", [{"messages": _colossal_form(CONVERSATION[1:3])}])
    manifest = prepare_sft(tmp_path / "in.jsonl", mistral_tokenizer_dir, tmp_path / "out", "--llama_version", 2)
    assert manifest["chat_template"] == "llama2"
    assert manifest["categories"]["sft"]["loss_tokens"] > 0


# Published templates of real models (tokenizer_config.json of Mistral-7B-Instruct-v0.1 and Meta-Llama-3-8B-Instruct).
MISTRAL_V01_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}"
    "{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
    "{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}"
    "{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}"
)
LLAMA3_INSTRUCT_TEMPLATE = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}"
    "{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim"
    " + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)


def _with_template(tokenizer_dir, template, folder):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    tokenizer.chat_template = template
    tokenizer.save_pretrained(folder)
    return folder, tokenizer


def test_template_raising_an_error_names_file_and_line(mistral_tokenizer_dir, jsonl, prepare_sft, load_parts, tmp_path):
    """Mistral v0.1's own template refuses a system message with raise_exception (a jinja2 TemplateError)."""
    tokenizer_dir, tokenizer = _with_template(mistral_tokenizer_dir, MISTRAL_V01_TEMPLATE, tmp_path / "tokenizer")
    path = jsonl(tmp_path / "chat.jsonl", [{"messages": CONVERSATION[1:3]}, {"messages": CONVERSATION[:3]}])
    with pytest.raises(InputError, match=r"chat\.jsonl:2: template error: Conversation roles must alternate"):
        prepare_sft(path, tokenizer_dir, tmp_path / "out")
    manifest = prepare_sft(path, tokenizer_dir, tmp_path / "out", "--on_error", "skip")
    assert manifest["records_kept"] == 1 and manifest["skipped"] == {"template error": 1}
    row = load_parts(tmp_path / "out")[0][0]
    assert row["input_ids"] == tokenizer.apply_chat_template(CONVERSATION[1:3], tokenize=True)


def test_template_that_trims_contents_learns_the_trimmed_answer(llama3_tokens_tokenizer_dir, jsonl, prepare_sft,
                                                              load_parts, tmp_path):
    """Llama 3's own template writes `content | trim`: an answer ending with a newline is still found and learned."""
    tokenizer_dir, tokenizer = _with_template(llama3_tokens_tokenizer_dir, LLAMA3_INSTRUCT_TEMPLATE,
                                              tmp_path / "tokenizer")
    messages = [{"role": "user", "content": "  Jaké je hlavní město České republiky?\n"},
                {"role": "assistant", "content": "Hlavním městem je Praha.\n\n"}]
    jsonl(tmp_path / "chat.jsonl", [{"messages": messages}])
    prepare_sft(tmp_path / "chat.jsonl", tokenizer_dir, tmp_path / "out")
    row = load_parts(tmp_path / "out")[0][0]
    assert row["input_ids"] == tokenizer.apply_chat_template(messages, tokenize=True)
    runs = _label_runs(row["labels"])
    assert len(runs) == 1 and tokenizer.decode(runs[0][:-1]) == "Hlavním městem je Praha."
    assert tokenizer.convert_ids_to_tokens(runs[0][-1]) == "<|eot_id|>"
