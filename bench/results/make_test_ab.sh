#!/bin/bash
# Interleaved A/B of the whole suite: A = 96f5709 (/tmp/fresh2), B = 619d0e8 (/work/main)
out=/tmp/ab_results.txt; : > $out
for rep in 1 2; do
  for side in A B; do
    if [ $side = A ]; then dir=/tmp/fresh2; else dir=/work/main; fi
    load=$(uptime | sed 's/.*load average: //')
    cd $dir
    /usr/bin/time -f "%e %U %S" -o /tmp/ab_time.txt env CI=true .venv/bin/python -m pytest -q -n 2 --dist loadgroup -p no:cacheprovider > /tmp/ab_$side$rep.txt 2>&1
    echo "$side rep$rep load_at_start=[$load] $(grep -E 'passed|failed' /tmp/ab_$side$rep.txt | tail -1) time(wall user sys)=$(tail -1 /tmp/ab_time.txt)" >> $out
  done
done
echo done >> $out
