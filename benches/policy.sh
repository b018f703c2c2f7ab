#!/usr/bin/env bash
# Policy benchmark: builds in release, runs every scenario over 20 seeds and every policy, and
# rewrites the "Policy benchmark" section of docs/benchmarks.md. Extra arguments are passed on,
# e.g. `benches/policy.sh --seeds 5` or `benches/policy.sh --tick 10s` (a simulate flag for
# every run).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench policy -- "$@"
