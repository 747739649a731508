"""colossal-lang: adapt an English-centric causal LLM to a new language by continual pre-training."""

__version__ = "0.1.0"
