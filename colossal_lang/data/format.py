"""The prepared-dataset format, as code: version, file names, columns and the manifest (see docs/formats.md).

Both prepare commands write it and the training loader reads it through this module only, so a field
has one name and one meaning everywhere.

```
<data_output_dir>/
  manifest.json        a `Manifest`
  arrow/part-00000/    bucket 0: a `datasets` folder (load_from_disk) with `COLUMNS`
  arrow/part-00001/    bucket 1, ...
```
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Dict, List, Optional

FORMAT = "colossal-lang/packed-v1"
MANIFEST_FILE = "manifest.json"
ARROW_DIR = "arrow"
# One row = one training sequence, unpadded: token ids, labels (-100 = no loss), lengths of the documents packed
# into it (summing to the row length), and the row's category (rows never mix categories).
COLUMNS = ("input_ids", "labels", "doc_lengths", "category")
PACKING_CHOICES = ("doc_causal", "causal")
ORDER_CHOICES = ("shuffle", "curriculum")


def part_folder(output_dir, bucket: int) -> Path:
    """`arrow/part-XXXXX`: the folder of bucket `bucket`."""
    return Path(output_dir) / ARROW_DIR / f"part-{bucket:05d}"


def features():
    """The `datasets.Features` of every part (int32 lists, a string category)."""
    from datasets import Features, Sequence, Value

    int_list = Sequence(Value("int32"))
    return Features({"input_ids": int_list, "labels": int_list, "doc_lengths": int_list, "category": Value("string")})


@dataclass
class Manifest:
    """What `manifest.json` holds. Counts per category are dicts (see docs/formats.md for their keys)."""

    kind: str  # "pretrain" or "sft"
    max_length: Optional[int]
    packing: str = "doc_causal"  # how the loader masks attention: "doc_causal" or "causal"
    num_buckets: Optional[int] = 1
    categories: Dict[str, dict] = field(default_factory=dict)
    category_weights: Optional[Dict[str, float]] = None
    order: str = "shuffle"  # "curriculum": train.py keeps the stored order
    seed: int = 0
    inputs: List[str] = field(default_factory=list)
    tokenizer_hash: Optional[str] = None
    tokenizer_dir: Optional[str] = None
    records_read: int = 0
    records_kept: int = 0
    skipped: Dict[str, int] = field(default_factory=dict)
    fingerprint: Optional[str] = None  # settings + input bytes + tokenizer: a rerun with the same one does nothing
    part_rows: List[int] = field(default_factory=list)  # rows per bucket
    fill_ratio: Optional[float] = None  # packed tokens / (rows × max_length), before resampling
    buffer_tokens: Optional[int] = None  # packing window (tokens per category)
    num_parts: Optional[int] = None  # input parts (units of resume and of --shard_index)
    special_tokens_in_text: Optional[str] = None  # pretraining only
    chat_template: Optional[str] = None  # SFT only
    packed: Optional[bool] = None  # SFT only: False = one conversation per row
    format: str = FORMAT
    extra: Dict[str, object] = field(default_factory=dict)  # keys this version does not know, kept as read

    # Written only when set: they belong to one kind of dataset or to newer writers.
    OPTIONAL = ("special_tokens_in_text", "chat_template", "packed", "fill_ratio", "buffer_tokens", "num_parts")

    @property
    def curriculum(self) -> bool:
        return self.order == "curriculum"

    def to_dict(self) -> dict:
        data = asdict(self)
        extra = data.pop("extra")
        data = {key: value for key, value in data.items() if value is not None or key not in self.OPTIONAL}
        return {**data, **extra}

    @classmethod
    def from_dict(cls, data: dict) -> "Manifest":
        known = {f.name for f in fields(cls)} - {"extra"}
        values = {key: value for key, value in data.items() if key in known}
        values.setdefault("kind", "pretrain")
        values.setdefault("max_length", None)
        values.setdefault("num_buckets", None)  # unknown: the loader then counts the part folders
        return cls(**values, extra={key: value for key, value in data.items() if key not in known})


def read_manifest(output_dir) -> Manifest:
    """The manifest of a prepared folder; ValueError (with the reason) when it is not valid JSON."""
    path = Path(output_dir) / MANIFEST_FILE
    return Manifest.from_dict(json.loads(path.read_text(encoding="utf-8")))


def write_manifest(output_dir, manifest: Manifest) -> None:
    text = json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n"
    (Path(output_dir) / MANIFEST_FILE).write_text(text, encoding="utf-8")
