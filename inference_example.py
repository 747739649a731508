"""Generate text with a trained (or base) model: thin CLI over colossal_lang.inference.

    python inference_example.py --model_path outputs/final --input_txt "Praha je" --do_sample false
    python inference_example.py --model_path outputs/final --chat     # prompts from stdin until EOF
"""

from colossal_lang.errors import run_cli
from colossal_lang.inference import main

if __name__ == "__main__":
    run_cli(main)
