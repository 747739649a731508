"""Shared I/O below every stage: jsonl/text reading, tokenizer and model loading, HF-folder checks and atomic
writes, dtype names, error trimming. Nothing here imports a stage (tokenizer, model, data, training, evaluation)."""
