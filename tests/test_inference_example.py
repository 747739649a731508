"""inference_example.py: greedy is deterministic and equal to an argmax loop, booleans parse, chat, stdin, errors."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from colossal_lang.errors import InputError
from colossal_lang.inference import GenerationSettings, generate, main, prompt_ids

REPO_ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Praha je hlavní město"


@pytest.fixture(scope="module")
def sliced(sliced_smollm2_dir):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    return AutoModelForCausalLM.from_pretrained(sliced_smollm2_dir).eval(), AutoTokenizer.from_pretrained(sliced_smollm2_dir)


def argmax_continuation(model, tokenizer, prompt, steps):
    """Greedy decoding by hand: append the most likely token, one full forward pass per step."""
    ids = tokenizer(prompt)["input_ids"]
    new_ids = []
    with torch.no_grad():
        for _ in range(steps):
            next_id = int(model(torch.tensor([ids + new_ids])).logits[0, -1].argmax())
            if next_id == tokenizer.eos_token_id:
                break
            new_ids.append(next_id)
    return tokenizer.decode(new_ids, skip_special_tokens=True)


def test_greedy_is_deterministic_and_equals_argmax(sliced):
    model, tokenizer = sliced
    greedy = GenerationSettings(max_new_tokens=8, do_sample=False)
    first = generate(model, tokenizer, PROMPT, greedy)
    assert first == generate(model, tokenizer, PROMPT, greedy)
    assert first == argmax_continuation(model, tokenizer, PROMPT, 8)
    assert first.strip()


def test_do_sample_false_on_the_command_line_is_greedy(sliced, sliced_smollm2_dir, capsys):
    model, tokenizer = sliced
    greedy_text = argmax_continuation(model, tokenizer, PROMPT, 8)
    common = ["--model_path", str(sliced_smollm2_dir), "--input_txt", PROMPT, "--max_new_tokens", "8",
              "--temperature", "5", "--top_k", "0", "--top_p", "1", "--seed", "3", "--device", "cpu"]
    for spelling in ("false", "False", "0"):
        assert main(common + ["--do_sample", spelling]) == [greedy_text]
    # The same flags with sampling on give something else: the check above can tell the two apart.
    assert main(common + ["--do_sample", "true"]) != [greedy_text]
    printed = capsys.readouterr().out
    assert printed.startswith(PROMPT + greedy_text)  # prompt echoed, continuation streamed after it


def test_sampling_with_a_seed_is_reproducible(sliced_smollm2_dir):
    argv = ["--model_path", str(sliced_smollm2_dir), "--input_txt", PROMPT, "--max_new_tokens", "6",
            "--do_sample", "--temperature", "2", "--seed", "11"]
    assert main(argv) == main(argv)


def test_chat_uses_the_tokenizer_template(sliced):
    _, tokenizer = sliced
    ids = prompt_ids(tokenizer, "Ahoj", chat=True)
    text = tokenizer.decode(ids)
    assert text.startswith("<|im_start|>") and "Ahoj" in text and text.rstrip().endswith("<|im_start|>assistant")
    assert prompt_ids(tokenizer, "Ahoj", chat=False) == tokenizer("Ahoj")["input_ids"]


def test_chat_without_a_template_is_a_clear_error(smollm2_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(smollm2_dir)
    tokenizer.chat_template = None
    with pytest.raises(InputError, match="no chat template"):
        prompt_ids(tokenizer, "Ahoj", chat=True)


def test_prompts_from_stdin_until_eof(sliced, sliced_smollm2_dir, monkeypatch, capsys):
    model, tokenizer = sliced
    monkeypatch.setattr(sys, "stdin", io.StringIO("Dobrý den\n\nThe weather today\n"))
    replies = main(["--model_path", str(sliced_smollm2_dir), "--max_new_tokens", "4", "--do_sample", "false",
                    "--prompt_style", "sft"])
    # The blank line is passed over; each line is answered on its own, as a chat turn (--prompt_style sft).
    greedy = GenerationSettings(max_new_tokens=4, do_sample=False)
    assert replies == [generate(model, tokenizer, prompt, greedy, chat=True)
                       for prompt in ("Dobrý den", "The weather today")]
    assert replies[0] != generate(model, tokenizer, "Dobrý den", greedy, chat=False)


def test_input_txt_naming_a_file_reads_its_lines(sliced_smollm2_dir, tmp_path):
    prompts = tmp_path / "prompt.txt"
    prompts.write_text("Praha je hlavní město\n\nThe capital of France is\n", encoding="utf-8")
    argv = ["--model_path", str(sliced_smollm2_dir), "--max_new_tokens", "5", "--do_sample", "false"]
    from_file = main(argv + ["--input_txt", str(prompts)])
    assert from_file == [main(argv + ["--input_txt", "Praha je hlavní město"])[0],
                         main(argv + ["--input_txt", "The capital of France is"])[0]]


def test_bad_model_path_exits_2_with_one_line(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(REPO_ROOT / "inference_example.py"), "--model_path", str(tmp_path / "nowhere"),
         "--input_txt", "hello", "--do_sample", "false"],
        capture_output=True, text=True, timeout=120, cwd=REPO_ROOT,
    )
    assert completed.returncode == 2
    assert completed.stderr.strip().count("\n") == 0
    assert completed.stderr.startswith("error: ") and "no such model folder" in completed.stderr


def test_bad_boolean_is_rejected(sliced_smollm2_dir):
    with pytest.raises(SystemExit) as caught:
        main(["--model_path", str(sliced_smollm2_dir), "--input_txt", "x", "--do_sample", "maybe"])
    assert caught.value.code == 2


def test_prompt_file_with_invalid_utf8_names_file_and_line_before_loading(tmp_path):
    prompts = tmp_path / "prompts.txt"
    prompts.write_bytes("Praha je\n".encode() + b"\xff\xfe bad\n")
    # The model folder does not exist: the prompt file is checked first, so that error is the one reported.
    with pytest.raises(InputError, match="invalid UTF-8 at byte 0") as caught:  # was a UnicodeDecodeError traceback
        main(["--model_path", str(tmp_path / "nowhere"), "--input_txt", str(prompts), "--do_sample", "false"])
    assert (caught.value.path, caught.value.line) == (str(prompts), 2)
