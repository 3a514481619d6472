#!/usr/bin/env bash
# Seed noise on the held-out task: rows of bench/bf16_parity.sh's held-out half retrained in fp32 with
# seed 1 (the table has seed 0), one thread; one JSON line per row in bench/results/heldout_seed_noise.jsonl.
# Is a bf16 - fp32 difference there larger than seed 1 - seed 0? Run it as two shards side by side:
#   bash bench/heldout_seed_noise.sh 51 2 & bash bench/heldout_seed_noise.sh 53 49 & wait
set -u
cd "$(dirname "$0")/.."
out=bench/results/heldout_seed_noise.jsonl
H="--table bench/tables/heldout.jsonl.gz --spec bench/tables/heldout_spec.toml"
echo "# $(date -u +%FT%TZ) rows $* $(uptime | sed 's/.*load/load/')" >>"$out"
for row in "$@"; do .venv/bin/python bench/seed_check_row.py $H --row "$row" --seed 1 >>"$out"; done
