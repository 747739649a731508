"""`prepare_sft_dataset.py`: validated conversations → chat-templated, assistant-masked arrow shards.

validate (file:line errors) → render with the chat template + tokenize + label assistant spans
(in order, `num_proc` workers) → drop whole trailing turns past max_length → optional packing
→ categories, weights, buckets → arrow parts + manifest.json (kind "sft"), same format as pretraining.
The streaming machinery (parts, shards, resume, combine) is `prepare_common.py`'s, as for pretraining.
"""

from __future__ import annotations

import argparse
from typing import Dict, Optional

from colossal_lang.cli import parse_args_with_config
from colossal_lang.data.chat_templates import TEMPLATE_CHOICES, resolve_template
from colossal_lang.data.prepare_common import add_common_flags, run_preparation
from colossal_lang.data.records import validate_sft_record
from colossal_lang.data.stream_part import RecordKind
from colossal_lang.data.tokenize_sft import tokenize_sft_batch


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_flags(parser, default_packing="none")
    parser.add_argument("--chat_template", choices=TEMPLATE_CHOICES, default="auto",
                        help="auto/tokenizer: the tokenizer's own chat_template; or a built-in")
    parser.add_argument("--llama_version", type=int, choices=(2, 3), default=None,
                        help="Colossal-LLaMA's flag: same as --chat_template llama2 / llama3")
    return parser


def sft_kind(args, tokenizer, template) -> RecordKind:
    """How a conversation becomes a document: rendered, tokenized once, labels on the assistant turns, never chunked."""
    return RecordKind(
        name="sft", validate=validate_sft_record, batch_function=tokenize_sft_batch,
        batch_kwargs={"tokenizer": tokenizer, "template": template, "max_length": args.max_length},
        batch_size=256, chunk=False, pack=args.packing != "none",
        document_flags=lambda batch: {"truncated_documents": batch.truncated},
        record_chars=lambda record: sum(len(message["content"]) for message in record["messages"]),
        desc="rendering + tokenizing", settings={"template": template.source})


def prepare_sft(args) -> Dict:
    """Run the SFT preparation for parsed `args`; returns the manifest written (or a shard's report)."""
    if args.llama_version is not None and args.chat_template == "auto":
        args.chat_template = f"llama{args.llama_version}"
    resolved = {}

    def make_kind(tokenizer):
        resolved["template"] = resolve_template(tokenizer, args.chat_template)
        return sft_kind(args, tokenizer, resolved["template"])

    def manifest_extras() -> Dict:
        # Unpacked rows hold one conversation each: the loader treats them like doc_causal rows of one document.
        return {"packing": "doc_causal" if args.packing == "none" else args.packing, "packed": args.packing != "none",
                "chat_template": resolved["template"].name}

    return run_preparation(args, "prepare_sft_dataset", make_kind, manifest_extras)


def main(argv: Optional[list] = None) -> Dict:
    return prepare_sft(parse_args_with_config(build_parser(), argv))
