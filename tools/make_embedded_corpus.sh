#!/usr/bin/env bash
# Builds the embedded default corpus: the English text of Debian's fortunes packages, tokenized byte-level into
#   OUT_DIR/fortunes_train_000000.bin and OUT_DIR/fortunes_val_000000.bin (val: the first ~5% of the bytes).
# usage: tools/make_embedded_corpus.sh OUT_DIR [TOKENIZER]     (or TOKENIZER=build/tokenizer in the environment)
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 OUT_DIR [TOKENIZER]   (TOKENIZER may also come from the environment)" >&2
  exit 2
fi
out_dir=$1
tokenizer=${2:-${TOKENIZER:-}}
fortune_dir=${FORTUNE_DIR:-/usr/share/games/fortunes}

if [[ -z "$tokenizer" || ! -x "$tokenizer" ]]; then
  echo "$0: the tokenizer program '${tokenizer}' is not an executable (pass it or set TOKENIZER)" >&2
  exit 2
fi
if [[ ! -d "$fortune_dir" ]]; then
  echo "$0: $fortune_dir not found (install the fortunes-min or fortunes package)" >&2
  exit 1
fi

# The plain-text fortune files: skip the strfile indexes (.dat), the .u8 duplicates and the offensive subfolder
# (find does not descend: -maxdepth 1, regular files only). Sorted, so the corpus is the same on every machine.
mapfile -t sources < <(find "$fortune_dir" -maxdepth 1 -type f ! -name '*.dat' ! -name '*.u8' | LC_ALL=C sort)
if [[ ${#sources[@]} -eq 0 ]]; then
  echo "$0: no fortune text files in $fortune_dir" >&2
  exit 1
fi

mkdir -p "$out_dir"
tmp=$(mktemp)
trap 'rm -f "$tmp"' EXIT
# A line holding only '%' separates two fortunes; a blank line separates them in the corpus.
for f in "${sources[@]}"; do
  sed -e 's/^%$//' "$f"
done > "$tmp"

"$tokenizer" --val-fraction 0.05 --out "$out_dir/fortunes" "$tmp"
