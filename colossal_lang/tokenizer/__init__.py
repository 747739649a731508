"""Tokenizer: train a target-language tokenizer, expand or swap a base tokenizer, report compression."""
