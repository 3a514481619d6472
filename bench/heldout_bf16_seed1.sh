#!/usr/bin/env bash
# The second paired precision check on the held-out task: the rows of bench/heldout_seed_noise.sh retrained
# under bf16 with the same seed 1 (compare with their fp32 seed-1 lines there); one JSON line per row in
# bench/results/bf16_parity.jsonl. Two shards side by side:
#   bash bench/heldout_bf16_seed1.sh 51 2 & bash bench/heldout_bf16_seed1.sh 53 49 & wait
set -u
cd "$(dirname "$0")/.."
out=bench/results/bf16_parity.jsonl
H="--table bench/tables/heldout.jsonl.gz --spec bench/tables/heldout_spec.toml"
echo "# $(date -u +%FT%TZ) seed 1, rows $* $(uptime | sed 's/.*load/load/')" >>"$out"
for row in "$@"; do .venv/bin/python bench/seed_check_row.py $H --row "$row" --seed 1 --bf16 >>"$out"; done
