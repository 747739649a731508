"""Generate text with a Hugging Face causal LM: raw continuation or the tokenizer's chat template, streamed.

The command line (`inference_example.py`) keeps Colossal-LLaMA's flags (`--model_path --tokenizer_path
--device --max_new_tokens --do_sample --temperature --top_k --top_p --input_txt --prompt_style`), with
booleans that parse (`--do_sample false` is greedy; Colossal-LLaMA's `type=bool` made it True), plus
`--dtype`, `--chat` and `--seed`. `--input_txt` is the prompt, or, when it names an existing file, the
file's non-blank lines are the prompts. Without `--input_txt` it reads prompts from stdin, one a line,
until EOF. Each prompt is answered on its own (no conversation history).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional

import torch

from colossal_lang.errors import InputError


@dataclass
class GenerationSettings:
    """Colossal-LLaMA's defaults; `do_sample=False` means greedy and ignores the sampling knobs."""

    max_new_tokens: int = 512
    do_sample: bool = True
    temperature: float = 0.3
    top_k: int = 50
    top_p: float = 0.95

    def generate_kwargs(self) -> dict:
        if not self.do_sample:
            # Only the switch: transformers warns when sampling knobs come with greedy decoding.
            return {"max_new_tokens": self.max_new_tokens, "do_sample": False, "temperature": None,
                    "top_k": None, "top_p": None}
        return {"max_new_tokens": self.max_new_tokens, "do_sample": True, "temperature": self.temperature,
                "top_k": self.top_k, "top_p": self.top_p}


def prompt_ids(tokenizer, prompt: str, chat: bool = False) -> List[int]:
    """Token ids of `prompt`: as a user turn of the chat template, or as raw text to continue."""
    if chat:
        if not getattr(tokenizer, "chat_template", None):
            raise InputError("this tokenizer has no chat template; use raw continuation (drop --chat)")
        return list(tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=True))
    # add_special_tokens: a LLaMA-style tokenizer puts its BOS in front, as in pretraining.
    return list(tokenizer(prompt, add_special_tokens=True)["input_ids"])


@torch.inference_mode()
def generate(model, tokenizer, prompt: str, settings: Optional[GenerationSettings] = None, chat: bool = False,
             streamer=None) -> str:
    """Generate a continuation (or chat reply) of `prompt`; returns only the new text, special tokens dropped."""
    settings = settings or GenerationSettings()
    device = next(model.parameters()).device
    ids = prompt_ids(tokenizer, prompt, chat)
    if not ids:
        raise InputError("empty prompt")
    input_ids = torch.tensor([ids], device=device)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    output = model.generate(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        pad_token_id=pad_id,
        streamer=streamer,
        **settings.generate_kwargs(),
    )
    return tokenizer.decode(output[0, len(ids):], skip_special_tokens=True)


def build_parser() -> argparse.ArgumentParser:
    from colossal_lang.cli import str2bool
    from colossal_lang.io.dtypes import DTYPE_CHOICES

    defaults = GenerationSettings()
    parser = argparse.ArgumentParser(
        prog="inference_example.py",
        description="Generate text with a Hugging Face causal LM folder (raw continuation or chat template).",
    )
    parser.add_argument("--model_path", required=True, help="Hugging Face model folder")
    parser.add_argument("--tokenizer_path", default=None, help="tokenizer folder (default: the model's)")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:0 ... (default: cuda if available, else cpu)")
    parser.add_argument("--dtype", default="auto", choices=DTYPE_CHOICES,
                        help="auto = bfloat16 on a CUDA device that has it, float32 otherwise")
    parser.add_argument("--max_new_tokens", type=int, default=defaults.max_new_tokens)
    parser.add_argument("--do_sample", type=str2bool, nargs="?", const=True, default=defaults.do_sample,
                        help="true: sample; false: greedy (default: true, as in Colossal-LLaMA)")
    parser.add_argument("--temperature", type=float, default=defaults.temperature)
    parser.add_argument("--top_k", type=int, default=defaults.top_k)
    parser.add_argument("--top_p", type=float, default=defaults.top_p)
    parser.add_argument("--seed", type=int, default=None, help="seed for sampling (reproducible samples)")
    parser.add_argument("--input_txt", default=None,
                        help="the prompt text, or a file of prompts (one a line); without it, prompts are read "
                             "from stdin one a line until EOF")
    parser.add_argument("--chat", type=str2bool, nargs="?", const=True, default=None,
                        help="wrap the prompt in the tokenizer's chat template (default: raw continuation)")
    parser.add_argument("--prompt_style", choices=("sft", "pretrained"), default=None,
                        help="Colossal-LLaMA's flag: sft = --chat, pretrained = raw continuation")
    return parser


def _use_chat(args) -> bool:
    if args.chat is not None:
        return args.chat
    return args.prompt_style == "sft"


def _check_settings(args) -> GenerationSettings:
    if args.max_new_tokens < 1:
        raise InputError("--max_new_tokens must be at least 1")
    if args.do_sample:
        if args.temperature <= 0:
            raise InputError("--temperature must be > 0 when sampling (use --do_sample false for greedy)")
        if not 0 < args.top_p <= 1:
            raise InputError("--top_p must be in (0, 1]")
        if args.top_k < 0:
            raise InputError("--top_k must be >= 0")
    return GenerationSettings(args.max_new_tokens, args.do_sample, args.temperature, args.top_k, args.top_p)


def main(argv: Optional[list] = None) -> List[str]:
    """Run the CLI; returns the generated texts (also streamed to stdout as they are produced)."""
    from transformers import TextStreamer, set_seed

    from colossal_lang.cli import parse_args_with_config
    from colossal_lang.io.models import load_model_and_tokenizer

    args = parse_args_with_config(build_parser(), argv)
    settings = _check_settings(args)
    chat = _use_chat(args)
    interactive = args.input_txt is None
    prompts = _stdin_prompts() if interactive else _given_prompts(args.input_txt)  # a bad file fails before the load
    model, tokenizer = load_model_and_tokenizer(args.model_path, args.device, args.dtype, args.tokenizer_path)
    streamer = TextStreamer(tokenizer, skip_prompt=True, skip_special_tokens=True)
    replies = []
    for prompt in prompts:
        if args.seed is not None:
            set_seed(args.seed)
        if not interactive:
            print(prompt, end="\n" if chat else "", flush=True)
        replies.append(generate(model, tokenizer, prompt, settings, chat=chat, streamer=streamer))
    return replies


def _given_prompts(input_txt: str) -> List[str]:
    """--input_txt is the prompt itself (Colossal-LLaMA) or, when it names a file, that file's lines."""
    from colossal_lang.io.jsonl import read_text_lines

    path = Path(input_txt)
    if len(input_txt) < 4096 and "\n" not in input_txt and path.is_file():
        prompts = [line for _, line in read_text_lines(path) if line.strip()]
        if not prompts:
            raise InputError("prompt file holds no non-blank line", path)
        return prompts
    return [input_txt]


def _stdin_prompts():
    """Prompts typed (or piped) on stdin, one a line; blank lines are passed over."""
    interactive_terminal = sys.stdin.isatty()
    while True:
        if interactive_terminal:
            print(">>> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return
        line = line.rstrip("\n")
        if line.strip():
            yield line
