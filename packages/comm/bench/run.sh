#!/usr/bin/env bash
# The comm benchmark (see driver.mjs); needs the package built (npm run build).
set -euo pipefail
cd "$(dirname "$0")/.."
exec node bench/driver.mjs "$@"
