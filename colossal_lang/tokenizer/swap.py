"""Vocabulary swap (BUT-FIT's CSTinyLlama): use the target tokenizer, and map new ids to old ones.

Tokens are matched by the bytes they stand for, so `Ġthe` (byte-level), `▁the` (SentencePiece) and
` the` all meet; `<0xC3>` meets `Ã`. Special tokens match by their text. An optional bilingual
dictionary (target<TAB>source per line) maps a target word to the source token of its translation
when that translation is a single source token.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Dict, List, Optional

from colossal_lang.errors import InputError
from colossal_lang.io.jsonl import read_text_lines
from colossal_lang.io.tokenizer_files import find_sentencepiece_model, load_hf_tokenizer, sentencepiece_processor
from colossal_lang.tokenizer.load import load_encoder
from colossal_lang.tokenizer.surface import token_bytes


def _id_to_token(folder: Path, family: str):
    """Every token by id, and the special ones (a SentencePiece model is read directly, without HF files)."""
    model_path = find_sentencepiece_model(folder) if family == "spm" else None
    if model_path is not None:
        processor = sentencepiece_processor(model_path)
        pieces = [processor.id_to_piece(i) for i in range(processor.get_piece_size())]
        special = {pieces[i] for i in range(len(pieces)) if processor.is_control(i) or processor.is_unknown(i)}
        return pieces, special
    tokenizer = load_hf_tokenizer(folder)
    return tokenizer.convert_ids_to_tokens(list(range(len(tokenizer)))), set(tokenizer.all_special_tokens)


def align_vocabularies(source_tokens: List[str], source_family: str, source_special: set,
                       target_tokens: List[str], target_family: str, target_special: set) -> Dict[int, int]:
    """new id -> old id for every target token whose canonical form is a source token."""
    old_by_form: Dict[object, int] = {}
    for old_id, token in enumerate(source_tokens):
        form = ("special", token) if token in source_special else token_bytes(token, source_family)
        if form is not None:
            old_by_form.setdefault(form, old_id)  # the lowest id wins: it is the one the base trained most
    new_to_old = {}
    for new_id, token in enumerate(target_tokens):
        form = ("special", token) if token in target_special else token_bytes(token, target_family)
        if form is not None and form in old_by_form:
            new_to_old[new_id] = old_by_form[form]
    return new_to_old


def read_bilingual_dictionary(path: Path) -> List[tuple]:
    path = Path(path)
    if not path.is_file():
        raise InputError("bilingual dictionary not found", path)
    pairs = []
    for line_number, line in read_text_lines(path):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 2 or not parts[0].strip() or not parts[1].strip():
            raise InputError("expected 'target<TAB>source'", path, line_number)
        pairs.append((parts[0].strip(), parts[1].strip()))
    return pairs


def add_dictionary_matches(new_to_old: Dict[int, int], pairs, target_encode, source_encode) -> int:
    """Map single-token target words (with and without a leading space) to single-token translations."""
    added = 0
    for target_word, source_word in pairs:
        for prefix in (" ", ""):
            new_ids = target_encode(prefix + target_word)
            old_ids = source_encode(prefix + source_word)
            if len(new_ids) == 1 and len(old_ids) == 1 and new_ids[0] not in new_to_old:
                new_to_old[new_ids[0]] = old_ids[0]
                added += 1
    return added


def swap_vocabulary(source_dir: Path, target_tokenizer_dir: Path, output_dir: Path, source_family: str,
                    target_family: str, bilingual_dictionary: Optional[Path] = None) -> Dict[str, object]:
    """Write the target tokenizer into `output_dir` with token_alignment.json; return counts."""
    source_dir, target_tokenizer_dir, output_dir = Path(source_dir), Path(target_tokenizer_dir), Path(output_dir)
    pairs = read_bilingual_dictionary(bilingual_dictionary) if bilingual_dictionary is not None else None  # fail fast
    source_tokens, source_special = _id_to_token(source_dir, source_family)
    target_tokens, target_special = _id_to_token(target_tokenizer_dir, target_family)
    new_to_old = align_vocabularies(source_tokens, source_family, source_special,
                                    target_tokens, target_family, target_special)
    exact = len(new_to_old)
    from_dictionary = 0
    if pairs is not None:
        source = load_encoder(find_sentencepiece_model(source_dir) or source_dir)
        target = load_encoder(target_tokenizer_dir)
        from_dictionary = add_dictionary_matches(new_to_old, pairs, target.encode, source.encode)
    output_dir.mkdir(parents=True, exist_ok=True)
    for item in target_tokenizer_dir.iterdir():
        if item.is_file():
            shutil.copyfile(item, output_dir / item.name)
    _carry_chat_template(source_dir, output_dir)
    alignment = {"source_tokenizer": str(source_dir), "new_to_old": {str(k): v for k, v in sorted(new_to_old.items())}}
    (output_dir / "token_alignment.json").write_text(json.dumps(alignment, indent=1), encoding="utf-8")
    return {"target_vocab": len(target_tokens), "exact_matches": exact, "dictionary_matches": from_dictionary,
            "unmatched": len(target_tokens) - len(new_to_old)}


def _carry_chat_template(source_dir: Path, output_dir: Path) -> None:
    source_config = source_dir / "tokenizer_config.json"
    target_config = output_dir / "tokenizer_config.json"
    if not (source_config.is_file() and target_config.is_file()):
        return
    template = json.loads(source_config.read_text(encoding="utf-8")).get("chat_template")
    if template:
        config = json.loads(target_config.read_text(encoding="utf-8"))
        config["chat_template"] = template
        target_config.write_text(json.dumps(config, ensure_ascii=False, indent=2), encoding="utf-8")
