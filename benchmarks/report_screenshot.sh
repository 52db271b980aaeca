#!/usr/bin/env bash
# docs/report_example.png: the `denetdm report` page of a committed Colored MNIST run (DeNetDM, 1%
# conflicting, seed 1, proxy selection) as headless Chromium (Debian's package) renders it. The page is
# written to a temporary folder (--out), so nothing under benchmarks/results changes; the screenshot is
# cut to 256 colours with Pillow (a dependency) to keep the committed PNG small. A few seconds.
set -euo pipefail
cd "$(dirname "$0")/.."
DENETDM=${DENETDM:-denetdm}
PYTHON=${PYTHON:-python}
CHROMIUM=${CHROMIUM:-chromium}
RUN=benchmarks/results/cmnist_proxy/runs/denetdm_r0.01_s1_proxy
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
page=$($DENETDM report "$RUN" --out "$TMP")
$CHROMIUM --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1200,2400 \
    --screenshot="$TMP/screenshot.png" "file://$(realpath "$page")" 2>/dev/null
$PYTHON - "$TMP/screenshot.png" docs/report_example.png <<'PY'
import sys
from PIL import Image

shot = Image.open(sys.argv[1]).convert("RGB")
shot.quantize(colors=256, method=Image.Quantize.FASTOCTREE, dither=Image.Dither.NONE).save(sys.argv[2], optimize=True)
PY
echo "wrote docs/report_example.png"
