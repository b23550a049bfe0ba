#!/usr/bin/env bash
# Trains the SentencePiece tokenizer of the shipped model with Debian's spm_train.
#   models/train/train_tokenizer.sh VOCAB_SIZE OUT_DIR
# Training text: the first 90% of the corpus lines (the trainer's split). Unigram model, identity
# normalization and kept whitespace (text round-trips exactly), byte fallback (any input encodes),
# newline as a symbol of its own (spm_train reads lines, so it would otherwise never see one),
# no dummy prefix (the model reads whole texts, where a line does not start with a space).
set -euo pipefail
vocab="$1"
out="$2"
repo="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$out"
corpus="$repo/models/corpus/tinyshakespeare.txt"
lines=$(wc -l < "$corpus")
head -n $((lines * 9 / 10)) "$corpus" > "$out/train.txt"
spm_train --input="$out/train.txt" --model_prefix="$out/tokenizer" --vocab_size="$vocab" \
  --model_type=unigram --character_coverage=1.0 --byte_fallback=true \
  --normalization_rule_name=identity --remove_extra_whitespaces=false \
  --allow_whitespace_only_pieces=true --split_digits=true --add_dummy_prefix=false \
  --user_defined_symbols=$'\n' --unk_id=0 --bos_id=1 --eos_id=2 --pad_id=-1 \
  --minloglevel=2 > "$out/spm_train.log" 2>&1
rm -f "$out/train.txt" "$out/tokenizer.vocab"
