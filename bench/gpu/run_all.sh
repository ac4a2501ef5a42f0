#!/usr/bin/env bash
# Everything a lent GPU should measure, in ONE call of the device tool (device time is short).
#
# Once, here:   echo /.data/ >> .git/info/exclude
#               mkdir -p .data && cp -r ../shared/datasets/{mnist,fashion-mnist} .data/
# Then:         run(command="bash bench/gpu/run_all.sh", carry=[".data"], timeout_s=600)
#
# Installs the checkout (no network, no dependencies: the machine's torch and Triton are used),
# then `python -m vaeprior.bench.gpu.run_all` runs the seven steps under one deadline: the
# whole script ends within BUDGET seconds (540 by default, the install included) and every step
# writes $OUT/<NN>-<step>.json as soon as it ends (7 files; at most 8 come back).
# DRY_RUN=1 runs every step at tiny sizes on the CPU instead (tests/test_gpu_script.py does).
set -uo pipefail
BUDGET=${BUDGET:-540}
OUT=${OUT:-bench/gpu-out}
PY=${PY:-python3}
export VAEPRIOR_DATA=${VAEPRIOR_DATA:-$PWD/.data} PYTHONUNBUFFERED=1
start=$SECONDS
mkdir -p "$OUT"
if [ "${DRY_RUN:-0}" = 1 ]; then
  exec $PY -m vaeprior.bench.gpu.run_all --out "$OUT" --budget "$BUDGET" --dry-run
fi
$PY -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUT/00-install.log" 2>&1 \
  || { cat "$OUT/00-install.log"; exit 1; }
rm -f "$OUT/00-install.log"
exec $PY -m vaeprior.bench.gpu.run_all --out "$OUT" --budget $((BUDGET - (SECONDS - start)))
