#!/usr/bin/env python
"""Prepare SFT data: conversations → chat-templated token ids with labels on the assistant turns only.

Example:
    python prepare_sft_dataset.py --data_input_dirs data/sft --tokenizer_dir TOKENIZER \
        --data_output_dirs outputs/sft --max_length 512 [--chat_template llama2|llama3|chatml] [--packing doc_causal]
"""

from colossal_lang.cli import transformers_without_torch

transformers_without_torch()  # before transformers is imported

from colossal_lang.data.prepare_sft import main  # noqa: E402
from colossal_lang.errors import run_cli  # noqa: E402

if __name__ == "__main__":
    run_cli(main)
