#!/usr/bin/env bash
# On the device: trains several regularization settings at once (the model is small enough that
# they share the GPU), then copies the run with the lowest validation loss into $OUT with a
# summary. Run from the repository root:
#   models/train/device_grid.sh TOKENIZER_DIR "ARGS A" "ARGS B" ...
set -euo pipefail
tokenizer="$1"
shift
export PYTHONUNBUFFERED=1
runs=/tmp/fox_grid
rm -rf "$runs"
mkdir -p "$runs"
i=0
for args in "$@"; do
  # shellcheck disable=SC2086
  python3 models/train/train_fox.py --tokenizer "$tokenizer/tokenizer.model" --out "$runs/run$i" \
    $args > "$runs/run$i.log" 2> "$runs/run$i.progress" &
  i=$((i + 1))
done
wait
python3 - "$runs" "$OUT" <<'PY'
import json, os, shutil, sys
runs, out = sys.argv[1], sys.argv[2]
results = {}
for name in sorted(os.listdir(runs)):
    path = os.path.join(runs, name, "metrics.json")
    if os.path.isdir(os.path.join(runs, name)) and os.path.exists(path):
        with open(path) as f:
            results[name] = json.load(f)
best = min(results, key=lambda n: results[n]["val_loss"])
summary = {n: {k: r[k] for k in ("vocab_size", "parameters", "steps", "best_step", "val_loss",
                                 "val_bits_per_char", "train_loss", "train_seconds")}
           | {"args": {k: r["args"][k] for k in ("lr", "dropout", "weight_decay", "max_steps")}}
           for n, r in results.items()}
summary["chosen"] = best
with open(os.path.join(out, "grid.json"), "w") as f:
    json.dump(summary, f, indent=2)
for f in os.listdir(os.path.join(runs, best)):
    shutil.copy(os.path.join(runs, best, f), out)
print(json.dumps(summary, indent=1))
PY
