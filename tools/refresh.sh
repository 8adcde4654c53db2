#!/usr/bin/env bash
# Refresh a shipped model folder from the training checkpoint, in the order that keeps it
# consistent: export (weights, golden file, training.json), the golden parity test, the three
# cache calibrations (they depend on the weights), then the adherence evaluation (evaluation.json,
# samples.png and the model card).
#
#   bash tools/refresh.sh [MODEL_DIR]      # default models/reference; stop the trainer first
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-models/reference}"
if pgrep -f "tools/train.py" > /dev/null; then
  echo "refresh: tools/train.py is running; stop it first (kill -TERM it; it checkpoints on exit)" >&2
  exit 2
fi
/usr/bin/python3 tools/export.py --out "$out"
if [ "$out" = "models/reference" ]; then
  node --import tsx --test --test-reporter=dot test/golden.test.ts
fi
for method in teacache magcache mixcache; do
  npx mixcache calibrate "$method" --model "$out"
done
npx mixcache evaluate --model "$out"
