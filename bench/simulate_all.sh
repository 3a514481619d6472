#!/usr/bin/env bash
# Every simulated figure in the README, regenerated from the committed tables (a few minutes on one core):
#   bash bench/simulate_all.sh [SEEDS]     (default 100 simulated studies per arm)
# docs/simulate (the default table, the shipped space), docs/simulate-heldout (the held-out table),
# docs/simulate-wide (the default table's wide space) and docs/budget (timeout_min swept on all three).
set -eu
cd "$(dirname "$0")/.."
seeds=${1:-100}
sim() { .venv/bin/python -m search simulate "$@" --seeds "$seeds" --clock cpu; }
simt() { local spec=$1 table=$2; shift 2; sim "$spec" --table "$table" "$@"; }  # SPEC TABLE ARGS...
stamp() { echo "# $(date -u +%FT%TZ) load: $(cut -d' ' -f1-3 /proc/loadavg)"; }
run() {  # OUT_DIR SPEC TABLE ARGS...: one simulate.txt with its date, load and command
  local out=$1 spec=$2 table=$3; shift 3
  mkdir -p "$out"
  { stamp; echo "# python -m search simulate $spec --table $table --seeds $seeds --clock cpu $* --out $out"
    sim "$spec" --table "$table" "$@" --out "$out" | grep -v '^simulated \|^wrote '; } >"$out/simulate.txt"
  cat "$out/simulate.txt"
}
H="bench/tables/heldout_spec.toml bench/tables/heldout.jsonl.gz"
D="studies/default.toml bench/tables/default.jsonl.gz"
W="bench/tables/default_spec.toml bench/tables/default.jsonl.gz"
arms=(--samplers random,tpe --stopping none,behind-baseline,cost-asha)
run docs/simulate $D "${arms[@]}"
run docs/simulate-heldout $H "${arms[@]}"
run docs/simulate-wide $W "${arms[@]}"
{  # the stopping rules on the wide space, 30 trials without a deadline (README, "Early stopping")
  stamp
  echo "# python -m search simulate ${W% *} --table ${W#* } --seeds $seeds --clock cpu --samplers random --stopping none,mo-asha,cost-asha,hv-asha,behind-baseline --timeout-min 0 --out /tmp/stopping"
  simt $W --samplers random --stopping none,mo-asha,cost-asha,hv-asha,behind-baseline --timeout-min 0 --out /tmp/stopping | grep -v '^simulated \|^wrote '
} >docs/simulate-wide/stopping.txt
cat docs/simulate-wide/stopping.txt
{  # what-if: the held-out study with bf16's median step-time ratio (bench/results/bench_bf16.txt)
  stamp
  echo "# what-if: every recorded second x 0.81 (1 / 1.23, bf16's median step-time ratio over 13 rows, bench/results/bench_bf16.txt); accuracy as recorded in fp32"
  echo "# python -m search simulate ${H% *} --table ${H#* } --seeds $seeds --clock cpu --samplers random --stopping none,behind-baseline --warm off --clock-factor 0.81 --out /tmp/whatif"
  simt $H --samplers random --stopping none,behind-baseline --warm off --clock-factor 0.81 --out /tmp/whatif | grep -v '^simulated \|^wrote '
} >docs/simulate-heldout/bf16_whatif.txt
{  # what-if: a slower machine. The live study of 2026-12-05 20:00 ran on an EPYC (family 23, model 49) where
   # the warm-start rows 97 and 48 trained at 1.27x and 1.55x the table's step time with two workers, i.e.
   # 1.22x and 1.49x after the 1.04 the simulator already applies (README, "The main study")
  stamp
  for f in 1.22 1.49; do
    echo "# python -m search simulate ${H% *} --table ${H#* } --seeds $seeds --clock cpu --samplers random --stopping none,behind-baseline --warm off --clock-factor $f --out /tmp/slower"
    simt $H --samplers random --stopping none,behind-baseline --warm off --clock-factor $f --out /tmp/slower | grep -v '^simulated \|^wrote '
  done
} >docs/simulate-heldout/slower_machine.txt
cat docs/simulate-heldout/slower_machine.txt
{  # the same held-out study replayed the way random search was before 2026-12-05: nearest rows
  stamp
  echo "# python -m search simulate ${H% *} --table ${H#* } --seeds $seeds --clock cpu --samplers random --stopping none,behind-baseline --warm off --draws nearest --out /tmp/nearest"
  simt $H --samplers random --stopping none,behind-baseline --warm off --draws nearest --out /tmp/nearest | grep -v '^simulated \|^wrote '
} >docs/simulate-heldout/nearest.txt
{  # sensitivity of behind-baseline's fraction (the shipped 0.8 was set on the wide space; README, "Early stopping")
  stamp
  echo "# [early_stopping] fraction varied in a copy of each spec (rule behind-baseline, rungs [500]); random sampling"
  trap 'rm -f bench/tables/.fraction-*.toml' EXIT
  for name in heldout default-wide; do
    case $name in heldout) set -- $H ;; default-wide) set -- $W ;; esac
    for f in 0.6 0.7 0.8 0.9 1.0; do
      tmp="bench/tables/.fraction-$name-$f.toml"  # next to the table: the spec's relative paths still hold
      sed "s/^fraction = .*/fraction = $f/" "$1" >"$tmp"
      echo "## $name, fraction $f: python -m search simulate $1 (fraction = $f) --table $2 --seeds $seeds --clock cpu --samplers random --stopping behind-baseline --warm off"
      sim "$tmp" --table "$2" --samplers random --stopping behind-baseline --warm off --out /tmp/fraction \
        | grep -v '^simulated \|^wrote \|^arm \|^table: '
    done
  done
} >docs/simulate-heldout/fraction.txt
cat docs/simulate-heldout/fraction.txt
rm -f docs/simulate-heldout/simulate_trials.csv docs/simulate-wide/simulate_trials.csv  # 2 MB each, not committed
{
  stamp
  echo "# the shipped study's budget (timeout_min) swept; n_trials 400 so that the time binds; $seeds simulated"
  echo "# studies per arm; 2 workers x 1 thread, CPU clock; random search draws table rows uniformly; the shipped stopping rule"
  for name in heldout default-narrow default-wide; do
    case $name in
      heldout) set -- $H; warm=both ;;
      default-narrow) set -- $D; warm=both ;;
      default-wide) set -- $W; warm=off ;;  # its warm start would come from this same table
    esac
    for min in 30 60 90 120 180; do
      echo "## $name, $min min: python -m search simulate $1 --table $2 --seeds $seeds --clock cpu --samplers random --stopping behind-baseline --warm $warm --timeout-min $min --n-trials 400 --out docs/budget/$name-$min"
      sim "$1" --table "$2" --samplers random --stopping behind-baseline --warm $warm --timeout-min $min --n-trials 400 \
        --out "docs/budget/$name-$min" | grep -v '^simulated \|^wrote '
      rm -f docs/budget/$name-$min/simulate{.csv,_trials.csv,.png}  # the summary is what the README reads
    done
  done
} >docs/budget/budget.txt
cat docs/budget/budget.txt
