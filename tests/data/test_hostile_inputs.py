"""Every malformed-input kind gives a one-line message naming the file and line, or is counted under skip."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from colossal_lang.errors import InputError

REPO = Path(__file__).resolve().parents[2]
GOOD = json.dumps({"source": "", "target": "Dobrý den, jak se máte?", "category": "cs"}, ensure_ascii=False).encode()
USER = {"from": "human", "content": "Přelož do češtiny:\nOpen the file."}
ANSWER = {"from": "assistant", "content": "Otevřete soubor."}

# name → (bytes of line 2 after a good line 1, expected message after "bad.jsonl:")
PRETRAIN_CASES = {
    "invalid JSON": (b'{"source": "", "target": "Ahoj", ', r"2: invalid JSON: "),
    "not an object": (b'["source", "target"]', r"2: expected a JSON object, got list"),
    "missing field": (b'{"source": "", "target": "Ahoj"}', r"2: missing field: 'category'"),
    "extra field": (b'{"source": "", "target": "Ahoj", "category": "cs", "id": 7}', r"2: unexpected field: 'id'"),
    "wrong type": (b'{"source": "", "target": 12, "category": "cs"}', r"2: wrong type: field 'target' must be a string, got int"),
    "null source": (b'{"source": null, "target": "Ahoj", "category": "cs"}', r"2: wrong type: field 'source' must be a string, got NoneType"),
    "empty target": (b'{"source": "Q", "target": "", "category": "cs"}', r"2: empty target"),
    "invalid UTF-8": (b'{"source": "", "target": "Ahoj \xff\xfe", "category": "cs"}', r"2: invalid UTF-8 at byte \d+"),
    # Valid JSON, but half of an emoji's surrogate pair is no text a tokenizer can take.
    "lone surrogate": (b'{"source": "Emoji: \\ud83d", "target": " a text", "category": "cs"}',
                       r"2: invalid text: field 'source' holds a lone surrogate \\ud83d at character 7"),
}


def _sft_line(messages):
    return json.dumps({"messages": messages}, ensure_ascii=False).encode()


SFT_CASES = {
    "unknown role": (_sft_line([{"from": "robot", "content": "Ahoj"}, ANSWER]), r"2: unknown role: message 0 has from 'robot'"),
    "assistant first": (_sft_line([ANSWER, USER]), r"2: assistant first: message 0"),
    "empty content": (_sft_line([USER, {"from": "assistant", "content": "  "}]), r"2: empty content: message 1"),
    "not alternating": (_sft_line([USER, USER, ANSWER]), r"2: not alternating: message 1 is 'user', expected 'assistant'"),
    "mixed forms role": (_sft_line([{"role": "human", "content": "Ahoj"}, ANSWER]), r"2: unknown role: message 0 has role 'human'"),
    "no answer": (_sft_line([USER]), r"2: no final answer"),
    "messages not a list": (b'{"messages": "Ahoj"}', r"2: wrong type: field 'messages' must be a list"),
    "first turn too long": (_sft_line([{"from": "human", "content": "Velmi dlouhá otázka. " * 40}, ANSWER]), r"2: first turn too long"),
    "lone surrogate": (b'{"messages": [{"from": "human", "content": "Ahoj"}, '
                       b'{"from": "assistant", "content": "\\udc00 :)"}]}',
                       r"2: invalid text: message 1 content holds a lone surrogate \\udc00 at character 0"),
}


def _write(path: Path, *lines: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


@pytest.mark.parametrize("case", sorted(PRETRAIN_CASES))
def test_bad_pretrain_record_names_file_and_line(case, smollm2_tokenizer_dir, prepare_pretrain, tmp_path):
    line, message = PRETRAIN_CASES[case]
    path = _write(tmp_path / "bad.jsonl", GOOD, line, GOOD)
    with pytest.raises(InputError, match=r"bad\.jsonl:" + message) as raised:
        prepare_pretrain(path, smollm2_tokenizer_dir, tmp_path / "out")
    assert "\n" not in str(raised.value)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", sorted(SFT_CASES))
def test_bad_conversation_names_file_and_line(case, smollm2_tokenizer_dir, prepare_sft, tmp_path):
    line, message = SFT_CASES[case]
    path = _write(tmp_path / "bad.jsonl", _sft_line([USER, ANSWER]), line)
    with pytest.raises(InputError, match=r"bad\.jsonl:" + message):
        prepare_sft(path, smollm2_tokenizer_dir, tmp_path / "out", "--max_length", 128)


def test_skip_policy_counts_each_reason_and_keeps_the_rest(smollm2_tokenizer_dir, prepare_pretrain, load_parts, tmp_path):
    bad_lines = [line for line, _ in PRETRAIN_CASES.values()]
    _write(tmp_path / "mixed" / "a.jsonl", *[part for line in bad_lines for part in (GOOD, line)])
    _write(tmp_path / "clean" / "a.jsonl", *[GOOD] * len(bad_lines))
    mixed = prepare_pretrain(tmp_path / "mixed", smollm2_tokenizer_dir, tmp_path / "out1", "--on_error", "skip")
    clean = prepare_pretrain(tmp_path / "clean", smollm2_tokenizer_dir, tmp_path / "out2")
    assert mixed["records_read"] == 2 * len(bad_lines) and mixed["records_kept"] == len(bad_lines)
    assert mixed["skipped"] == {
        "invalid JSON": 1, "expected a JSON object": 1, "missing field": 1, "unexpected field": 1,
        "wrong type": 2, "empty target": 1, "invalid UTF-8": 1, "invalid text": 1}
    assert mixed["categories"] == clean["categories"]
    assert load_parts(tmp_path / "out1")[0]["input_ids"] == load_parts(tmp_path / "out2")[0]["input_ids"]


def test_bom_and_crlf_are_read_as_plain_lines(smollm2_tokenizer_dir, smollm2_tokenizer, prepare_pretrain, load_parts, tmp_path):
    path = tmp_path / "windows.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD + b"\r\n" + GOOD + b"\r\n")
    manifest = prepare_pretrain(path, smollm2_tokenizer_dir, tmp_path / "out")
    assert manifest["records_kept"] == 2 and manifest["skipped"] == {}
    expected = smollm2_tokenizer("Dobrý den, jak se máte?<|im_end|>")["input_ids"]
    row = load_parts(tmp_path / "out")[0][0]
    assert row["input_ids"] == expected * 2 and row["doc_lengths"] == [len(expected)] * 2


@pytest.mark.parametrize("case", ["empty file", "folder without jsonl", "no such path", "max_length 1",
                                  "tokenizer missing files", "unknown weight category", "bad weights"])
def test_bad_inputs_and_flags(case, smollm2_tokenizer_dir, prepare_pretrain, tmp_path):
    inputs, tokenizer_dir, extra = _write(tmp_path / "in" / "a.jsonl", GOOD), smollm2_tokenizer_dir, []
    if case == "empty file":
        inputs = tmp_path / "empty.jsonl"
        inputs.write_bytes(b"")
        message = r"empty\.jsonl: empty file"
    elif case == "folder without jsonl":
        inputs = tmp_path / "texts"
        _write(inputs / "notes.txt", b"no jsonl here")
        message = r"texts: folder holds no \.jsonl file"
    elif case == "no such path":
        inputs, message = tmp_path / "missing", r"missing: no such file or folder"
    elif case == "max_length 1":
        extra, message = ["--max_length", 1], r"--max_length must be at least 2"
    elif case == "tokenizer missing files":
        tokenizer_dir = tmp_path / "tokenizer"
        tokenizer_dir.mkdir()
        (tokenizer_dir / "tokenizer_config.json").write_text("{}")
        message = r"tokenizer: cannot load the tokenizer \(the folder holds tokenizer_config\.json\): \S"
    elif case == "unknown weight category":
        extra, message = ["--category_weights", "cs=0.5,de=0.5"], r"names category 'de' that no record has"
    else:
        extra, message = ["--category_weights", "cs=half"], r"expected name=weight"
    with pytest.raises(InputError, match=message):
        prepare_pretrain(inputs, tokenizer_dir, tmp_path / "out", *extra)


def test_sft_template_choices_are_checked(mistral_tokenizer_dir, smollm2_tokenizer_dir, prepare_sft, tmp_path):
    path = _write(tmp_path / "chat.jsonl", _sft_line([USER, ANSWER]))
    with pytest.raises(InputError, match=r"the tokenizer has no chat_template: pass --chat_template llama2, llama3 or chatml"):
        prepare_sft(path, mistral_tokenizer_dir, tmp_path / "out")
    with pytest.raises(InputError, match=r"--chat_template llama3 needs token\(s\) <\|begin_of_text\|>"):
        prepare_sft(path, smollm2_tokenizer_dir, tmp_path / "out", "--chat_template", "llama3")


def test_cli_prints_one_line_and_exits_2(smollm2_tokenizer_dir, tmp_path):
    path = _write(tmp_path / "bad.jsonl", GOOD, PRETRAIN_CASES["invalid JSON"][0])
    result = subprocess.run(
        [sys.executable, str(REPO / "prepare_pretrain_dataset.py"), "--data_input_dirs", str(path),
         "--tokenizer_dir", str(smollm2_tokenizer_dir), "--data_output_dirs", str(tmp_path / "out")],
        capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert errors == [f"error: {path}:2: invalid JSON: Expecting property name enclosed in double quotes at column 34"]
    assert "Traceback" not in result.stderr
