"""Evaluation: bits per byte / perplexity, multiple-choice accuracy, comparison reports."""
