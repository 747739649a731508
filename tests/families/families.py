"""The families under test: name -> how its tokenizer expands (see colossal_lang/tokenizer/family.py)."""

# Every family the issue names; Llama 3.1 only in the benchmark (it has Llama 3's vocabulary).
FAMILIES = {"llama3": "byte_level", "qwen3": "byte_level", "deepseek_v3": "byte_level", "gptoss": "byte_level",
            "gemma3": "metaspace", "llama2": "metaspace", "mistral": "spm"}
