#!/usr/bin/env bash
# Paired precision check: retrain recorded table rows with their own seed (0) under bf16 autocast, one
# thread each, two shards side by side; one JSON line per row in bench/results/bf16_parity.jsonl.
#   bash bench/bf16_parity.sh
set -u
cd "$(dirname "$0")/.."
out=bench/results/bf16_parity.jsonl
py=.venv/bin/python
H="--table bench/tables/heldout.jsonl.gz --spec bench/tables/heldout_spec.toml"
D="--table bench/tables/default.jsonl.gz --spec studies/default.toml"
shard() {  # "table-args|row" ...
  for job in "$@"; do
    args=${job%|*}; row=${job#*|}
    $py bench/seed_check_row.py $args --row "$row" --seed 0 --bf16 >>"$out"
  done
}
echo "# $(date -u +%FT%TZ) $(uptime | sed 's/.*load/load/')" >>"$out"
shard "$H|2" "$H|49" "$H|53" "$H|51" "$H|22" "$H|69" "$H|24" &
shard "$D|3" "$D|97" "$D|41" "$D|48" "$D|123" "$H|52" &
wait
echo "# $(date -u +%FT%TZ) $(uptime | sed 's/.*load/load/')" >>"$out"
