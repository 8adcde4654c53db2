#!/usr/bin/env bash
# Refresh a shipped model folder from the training checkpoint, in the order that keeps it
# consistent: export (weights, golden file, training.json), the golden parity test, the three
# cache calibrations (they depend on the weights), then the adherence evaluation (evaluation.json,
# samples.png and the model card).
#
#   bash tools/refresh.sh [reference|textures]   # default reference; stop the trainer first
set -euo pipefail
cd "$(dirname "$0")/.."
name="${1:-reference}"
case "$name" in
  reference) dataset=shapes ;;
  textures) dataset=textures ;;
  *) echo "refresh: unknown model '$name'; use reference or textures" >&2; exit 2 ;;
esac
out="models/$name"
if pgrep -f "tools/train.py.*--dataset $dataset" > /dev/null || { [ "$dataset" = shapes ] && pgrep -f "tools/train.py" | xargs -r ps -o args= -p | grep -vq -- "--dataset"; }; then
  echo "refresh: tools/train.py is training this model; stop it first (kill -TERM it; it checkpoints on exit)" >&2
  exit 2
fi
/usr/bin/python3 tools/export.py --dataset "$dataset"
node --import tsx --test --test-reporter=dot test/golden.test.ts
for method in teacache magcache mixcache; do
  npx mixcache calibrate "$method" --model "$name" --save
done
npx mixcache evaluate --model "$name" --save
