"""The summary every preparation run prints: what was read, kept, skipped, chunked, and what came out."""

from __future__ import annotations

from pathlib import Path
from typing import Dict


def print_summary(command: str, manifest: Dict, output_dir: Path, seconds: float, reused_parts: int = 0) -> None:
    """Print records read/kept/skipped (by reason) and, per category, documents, sequences and tokens."""
    skipped = manifest.get("skipped") or {}
    print(f"{command}: read {manifest['records_read']} records from {len(manifest['inputs'])} file(s), "
          f"kept {manifest['records_kept']}, skipped {sum(skipped.values())}")
    for reason, count in sorted(skipped.items()):
        print(f"  skipped {count:>8}  {reason}")
    categories = manifest["categories"]
    total_tokens = sum(entry["tokens"] for entry in categories.values()) or 1
    extra = "truncated_documents" if manifest["kind"] == "sft" else "chunked_documents"
    header = (f"  {'category':<16}{'records':>9}{extra.split('_')[0]:>10}{'in tokens':>12}{'fill':>7}{'sequences':>11}"
              f"{'tokens':>12}{'loss tok':>11}{'share':>8}")
    print(header)
    for name, entry in categories.items():
        fill = entry.get("fill_ratio")
        print(f"  {name:<16}{entry.get('records', 0):>9}{entry.get(extra, 0):>10}{entry.get('input_tokens', 0):>12}"
              f"{'-' if fill is None else f'{fill:.1%}':>7}{entry['sequences']:>11}{entry['tokens']:>12}"
              f"{entry['loss_tokens']:>11}{entry['tokens'] / total_tokens:>8.1%}")
    inside = {name: entry["special_token_documents"] for name, entry in categories.items() if entry.get("special_token_documents")}
    if inside:
        listing = ", ".join(f"{name} {count}" for name, count in inside.items())
        print(f"  documents whose text became special tokens (e.g. a literal </s>): {listing}; "
              f"--special_tokens_in_text split keeps such strings as text")
    packing = manifest["packing"] if manifest.get("packed", True) else "none (one conversation per row)"
    print(f"  packing {packing}, max_length {manifest['max_length']}, order {manifest['order']}, "
          f"{manifest['num_buckets']} bucket(s) with {manifest.get('part_rows')} rows")
    fill = manifest.get("fill_ratio")
    if fill is not None:
        print(f"  fill ratio {fill:.2%} (packed tokens / (rows × max_length), before resampling), "
              f"packing window {manifest.get('buffer_tokens')} tokens per category")
    parts = manifest.get("num_parts")
    if parts:
        print(f"  {parts} input part(s): {reused_parts} already prepared, {parts - reused_parts} prepared now")
    print(f"wrote {output_dir} in {seconds:.1f} s")
