#!/usr/bin/env bash
# Seed noise on the held-out task: the rows of bench/bf16_parity.sh's held-out half retrained in fp32 with
# seed 1 (the table has seed 0), one thread each, two shards side by side; one JSON line per row in
# bench/results/heldout_seed_noise.jsonl. Is a bf16 - fp32 difference there larger than seed 1 - seed 0?
#   bash bench/heldout_seed_noise.sh
set -u
cd "$(dirname "$0")/.."
out=bench/results/heldout_seed_noise.jsonl
py=.venv/bin/python
H="--table bench/tables/heldout.jsonl.gz --spec bench/tables/heldout_spec.toml"
shard() { for row in "$@"; do $py bench/seed_check_row.py $H --row "$row" --seed 1 >>"$out"; done; }
echo "# $(date -u +%FT%TZ) $(uptime | sed 's/.*load/load/')" >>"$out"
shard 51 2 &
shard 53 49 &
wait
echo "# $(date -u +%FT%TZ) $(uptime | sed 's/.*load/load/')" >>"$out"
