#!/usr/bin/env bash
# On the device: trains one model per tokenizer vocabulary size with the same time budget and
# copies the one with the lowest validation bits per character (comparable across vocabularies)
# into $OUT, with a sweep summary. Run from the repository root:
#   models/train/device_sweep.sh SECONDS_PER_RUN TOKENIZER_DIR...
set -euo pipefail
seconds="$1"
shift
export PYTHONUNBUFFERED=1
runs=/tmp/fox_sweep
rm -rf "$runs"
for dir in "$@"; do
  name="$(basename "$dir")"
  python3 models/train/train_fox.py --tokenizer "$dir/tokenizer.model" --out "$runs/$name" \
    --seconds "$seconds" 2> "$runs.$name.progress" | tee "$runs.$name.log"
done
python3 - "$runs" "$OUT" <<'PY'
import json, os, shutil, sys
runs, out = sys.argv[1], sys.argv[2]
results = {}
for name in sorted(os.listdir(runs)):
    with open(os.path.join(runs, name, "metrics.json")) as f:
        results[name] = json.load(f)
best = min(results, key=lambda n: results[n]["val_bits_per_char"])
summary = {n: {k: r[k] for k in ("vocab_size", "parameters", "steps", "best_step", "val_loss",
                                 "val_perplexity", "val_chars_per_token", "val_bits_per_char",
                                 "train_loss", "train_seconds")} for n, r in results.items()}
summary["chosen"] = best
with open(os.path.join(out, "sweep.json"), "w") as f:
    json.dump(summary, f, indent=2)
for f in os.listdir(os.path.join(runs, best)):
    shutil.copy(os.path.join(runs, best, f), out)
print(json.dumps(summary, indent=1))
PY
