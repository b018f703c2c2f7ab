#!/usr/bin/env bash
# Calls cut by "ours" in the policy benchmark's slow-lognormal-boot runs (3 variants x seeds
# 1-20, the runs that cut 2 calls before the agent's hello): `benches/slow-boot-cuts.sh [BINARY]`.
# Prints each run that cut a call, then the total, rejected % and boot aborts per variant.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${1:-target/debug/jitsi-scaler}
BASE="--profile diurnal --rate 60/h --days 2 --boot 5m --boot-cv 0.5 --mean-duration 20m --cv 1"
total=0
for variant in "" "--min 22" \
    "--min-schedule 4,4,3,3,4,4,7,11,17,21,23,21,16,19,22,21,18,14,10,8,7,6,5,4"; do
  cut_v=0; rej_v=0; aborts_v=0
  for seed in $(seq 1 20); do
    # shellcheck disable=SC2086
    read -r cut rej aborts < <("$BIN" simulate $BASE $variant --seed "$seed" --json 2>/dev/null |
      python3 -c 'import json,sys; d=json.load(sys.stdin); p=[x for x in d["policies"] if x["policy"]=="ours"][0]; print(p["cut_calls"], p["rejected_pct"], p["boot_aborts"])')
    [ "$cut" != 0 ] && echo "variant '${variant:-min 2}' seed $seed: $cut cut"
    cut_v=$((cut_v + cut)); aborts_v=$((aborts_v + aborts))
    rej_v=$(python3 -c "print($rej_v + $rej)")
  done
  printf '%-22.22s cut %d, rejected %.2f %%, boot aborts %d\n' "${variant:-min 2}" "$cut_v" \
    "$(python3 -c "print($rej_v / 20)")" "$aborts_v"
  total=$((total + cut_v))
done
echo "total cut calls (ours): $total"
