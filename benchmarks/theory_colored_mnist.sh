#!/usr/bin/env bash
# The paper's analyses on Colored MNIST (1%): Figures 2a, 2b, 3 and the effective-rank checks.
# Writes JSON, PNG and SVG into docs/theory/ (see docs/theory.md). About 15 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
DENETDM=${DENETDM:-denetdm}
OUT=docs/theory
$DENETDM analyze decodability --figure 2a --out $OUT threads=1
$DENETDM analyze decodability --figure 2b --seeds 0,1,2 --out $OUT threads=1
$DENETDM analyze decodability --figure 3 --seeds 0,1,2 --out $OUT threads=1
$DENETDM analyze rank --models mlp:3,mlp:5 --iterations 0,25,50,100,200,500 --out $OUT threads=1
