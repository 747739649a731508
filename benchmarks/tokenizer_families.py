"""The `families` section of bench_tokenizer.py: every base family users adapt, expanded with Czech, protected.

Per family: the real tokenizer (.cache/tokenizers/NAME, `make tokenizers`; Mistral v1 in the Hugging Face
folder layout, tokenizer.model + tokenizer.json), a Czech tokenizer of `vocab_size` trained on the Czech
text (byte-level BPE with the base's own pre-tokenizer, or one SentencePiece BPE for the `▁` families),
then init_tokenizer with English (data/pretrain/en) protected. Measured with AutoTokenizer on data/heldout.
"""

from __future__ import annotations

import subprocess
import tempfile
import time
from pathlib import Path

from colossal_lang.tokenizer.corpus import load_texts
from colossal_lang.tokenizer.family import tokenizer_family
from colossal_lang.tokenizer.init_tokenizer import main as init_main
from colossal_lang.tokenizer.train_tokenizer import main as train_main

REPO = Path(__file__).resolve().parents[1]
FAMILIES = ("llama3", "llama3_1", "qwen3", "deepseek_v3", "gptoss", "gemma3", "llama2", "mistral")


def base_folder(name: str, work: Path) -> Path:
    if name == "mistral":
        from transformers import LlamaTokenizerFast

        folder = work / "mistral-hf"
        LlamaTokenizerFast.from_pretrained(REPO / "data" / "tokenizers" / "mistral-v1").save_pretrained(folder)
        return folder
    folder = REPO / ".cache" / "tokenizers" / name
    if not (folder / "tokenizer.json").is_file():
        subprocess.run(["bash", str(REPO / "scripts" / "fetch_tokenizers.sh"), name], cwd=REPO, check=True)
    return folder


def round_trips(tokenizer, texts):
    encoded = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    return [tokenizer.decode(ids) == text for ids, text in zip(encoded, texts)]


def measure(base, grown, czech, english) -> dict:
    def tokens(tokenizer, texts):
        return tokenizer(list(texts), add_special_tokens=False)["input_ids"]

    chars = sum(map(len, czech))
    texts = czech + english
    base_ok, grown_ok = round_trips(base, texts), round_trips(grown, texts)
    grown_vocab = grown.get_vocab()
    specials = {token_id: added.content for token_id, added in base.added_tokens_decoder.items()}
    return {
        "cs_before": chars / sum(map(len, tokens(base, czech))),
        "cs_after": chars / sum(map(len, tokens(grown, czech))),
        "en_identical": sum(a == b for a, b in zip(tokens(base, english), tokens(grown, english))),
        "round_trip_base": sum(base_ok),
        "round_trip_kept": sum(b and g for b, g in zip(base_ok, grown_ok)),
        "specials": len(specials),
        "specials_kept": sum(grown_vocab.get(content) == token_id for token_id, content in specials.items()),
        "old_ids_kept": all(grown_vocab.get(token) == token_id for token, token_id in base.get_vocab().items()),
    }


def families_section(vocab_size: int, czech_train: str) -> str:
    from transformers import AutoTokenizer

    heldout = REPO / "data" / "heldout"
    czech = load_texts(sorted(str(p) for p in heldout.glob("cs_*.jsonl")))
    english = load_texts(sorted(str(p) for p in heldout.glob("en_*.jsonl")))
    reference = str(REPO / "data" / "pretrain" / "en")
    work = Path(tempfile.mkdtemp(prefix="bench-tokenizer-families-"))
    spm_trained = None
    rows = []
    for name in FAMILIES:
        base_dir = base_folder(name, work)
        family = tokenizer_family(base_dir)
        if family == "byte_level":
            trained = work / f"cs-{name}"
            train_main(["--data_input_dirs", czech_train, "--model_type", "byte_level_bpe", "--base_tokenizer_dir",
                        str(base_dir), "--vocab_size", str(vocab_size), "--output_dir", str(trained)])
        else:
            if spm_trained is None:
                spm_trained = work / "cs-spm"
                train_main(["--data_input_dirs", czech_train, "--model_type", "bpe", "--vocab_size", str(vocab_size),
                            "--output_dir", str(spm_trained)])
            trained = spm_trained
        started = time.time()
        plan = init_main(["--source_tokenizer_dir", str(base_dir), "--target_tokenizer_dir", str(work / f"{name}-cs"),
                          "--expand_from_tokenizer", str(trained), "--reference_text", reference])
        seconds = time.time() - started
        base, grown = AutoTokenizer.from_pretrained(base_dir), AutoTokenizer.from_pretrained(work / f"{name}-cs")
        result = measure(base, grown, czech, english)
        rows.append((name, family, len(base), len(plan.new_tokens), result, seconds))
        print(f"{name}: {result}", flush=True)
    table = render(rows, len(czech), len(english))
    print(table)
    return (f"## Base families\n\nEach base expanded with a {vocab_size}-token Czech tokenizer trained on {czech_train} "
            "(byte-level BPE with the base's own pre-tokenizer, or SentencePiece BPE for the `▁` families), English "
            f"protected against data/pretrain/en; measured with AutoTokenizer on data/heldout ({len(czech)} Czech, "
            f"{len(english)} English documents). Round trip: documents with decode(encode(x)) == x after expansion, "
            "of those where the base round-trips. Special ids: added/special/reserved tokens at their old id.\n\n"
            + table + "\n")


def render(rows, czech_docs, english_docs) -> str:
    lines = ["| base | family | old ids | new tokens | cs chars/token before | after | ratio | en identical docs | "
             "round trip | special ids unchanged | all old ids kept | expand time |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for name, family, old, new, r, seconds in rows:
        lines.append(f"| {name} | {family} | {old} | {new} | {r['cs_before']:.3f} | {r['cs_after']:.3f} | "
                     f"{r['cs_after'] / r['cs_before']:.2f}x | {r['en_identical']}/{english_docs} | "
                     f"{r['round_trip_kept']}/{r['round_trip_base']} | {r['specials_kept']}/{r['specials']} | "
                     f"{'yes' if r['old_ids_kept'] else 'NO'} | {seconds:.0f}s |")
    return "\n".join(lines) + "\n"
