#!/usr/bin/env python
"""Prepare pretraining data: validated jsonl → masked, chunked, packed, category-binned arrow shards.

Example:
    python prepare_pretrain_dataset.py --data_input_dirs data/pretrain/cs,data/pretrain/en \
        --tokenizer_dir TOKENIZER --data_output_dirs outputs/pretrain --max_length 256 \
        --category_weights cs=0.75,en=0.25 --num_proc 2
"""

from colossal_lang.cli import transformers_without_torch

transformers_without_torch()  # before transformers is imported

from colossal_lang.data.prepare_pretrain import main  # noqa: E402
from colossal_lang.errors import run_cli  # noqa: E402

if __name__ == "__main__":
    run_cli(main)
