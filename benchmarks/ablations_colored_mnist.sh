#!/usr/bin/env bash
# The paper's depth ablations on Colored MNIST 1%: Table 5 (equal vs unequal depths, stage 1, 5 seeds)
# and Table 9 (six (shallow, deep) pairs, the full method), the paper's schedule, last epoch.
# The two run side by side on one thread each (about 75 and 90 minutes on 2 cores); rerunning
# continues from benchmarks/results/ablation_table{5,9}/results.jsonl. Tables are copied to docs/theory/.
set -euo pipefail
cd "$(dirname "$0")/.."
DENETDM=${DENETDM:-denetdm}
R=benchmarks/results
$DENETDM benchmark --ablation table5 --selections last --workers 1 --out $R/ablation_table5 -q threads=1 &
t5=$!
$DENETDM benchmark --ablation table9 --selections last --workers 1 --out $R/ablation_table9 -q threads=1 &
t9=$!
wait $t5
wait $t9
cp $R/ablation_table5/table5.md $R/ablation_table5/table5.json $R/ablation_table9/table9.md $R/ablation_table9/table9.json docs/theory/
