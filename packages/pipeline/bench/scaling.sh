#!/usr/bin/env bash
# The pipeline benchmark at p = 1, 2, 4, 8 on a machine with at least 8 free cores (one process per
# stage, plus the one-process reference run alone). Extra arguments go to bench/pipeline.mjs.
#   bash bench/scaling.sh [--m 8] [--schedule 1f1b] ...
set -euo pipefail
cd "$(dirname "$0")/.."
cores=$(nproc)
if [ "$cores" -lt 8 ]; then
  echo "scaling.sh: this machine has $cores cores; p = 8 needs at least 8 (results would measure oversubscription)" >&2
  exit 1
fi
node bench/pipeline.mjs --ranks 1,2,4,8 --depth 16 --batch 1024 --rounds 3 --steps 6 --json bench/scaling-results.json "$@"
