#!/usr/bin/env bash
# Everything issue 7 asks of a lent GPU, in ONE call (device time is short), results in $OUT.
#
# Here, once:   echo /.data/ >> .git/info/exclude
#               mkdir -p .data && cp -r ../shared/datasets/{mnist,fashion-mnist} .data/
# Then (device tool): run(command="bash bench/gpu/run_all.sh", carry=[".data"], timeout_s=600)
#
# Steps (each bounded so the later ones still run): install the project (no network, no deps),
# device ceilings, the whole test suite on CUDA, the kernel benchmarks at paper sizes, training
# speed per backend, then as much of the paper's 2400-epoch FashionMNIST schedule of the
# DenseVAE + RNVP prior as the remaining time allows (checkpointed; the fraction is in metrics).
set -uo pipefail
OUT=${OUT:-bench/gpu-out}
mkdir -p "$OUT"
export VAEPRIOR_DATA=${VAEPRIOR_DATA:-$PWD/.data} PYTHONUNBUFFERED=1
PY=${PY:-python3}
SCHEDULE_SECONDS=${SCHEDULE_SECONDS:-150}

$PY -m pip install -q --no-deps --no-build-isolation --no-index -e . >"$OUT/install.log" 2>&1 \
  || { cat "$OUT/install.log"; exit 1; }
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/device.txt"
$PY -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" \
  | tee -a "$OUT/device.txt"

timeout 60 $PY -m vaeprior.bench.gpu.ceilings --out "$OUT/ceilings.json"
timeout 180 $PY -m pytest -q -x --timeout=170 tests -p no:cacheprovider >"$OUT/tests.log" 2>&1
tail -5 "$OUT/tests.log"
timeout 180 $PY -m pytest -q bench --benchmark-enable --benchmark-json="$OUT/bench.json" \
  -p no:cacheprovider >>"$OUT/device.txt" 2>&1
timeout 120 $PY -m vaeprior.bench.gpu.train_speed --out "$OUT/speed.json" | tail -3
timeout "$SCHEDULE_SECONDS" $PY -m vaeprior.fast train --model dense --prior rnvp --flow-depth 20 \
  --dataset fashion-mnist --strategy joint --checkpoint-every 50 --no-progress \
  --out "$OUT/run-fashion-rnvp" >"$OUT/train.log" 2>&1
cp "$OUT/run-fashion-rnvp/metrics.jsonl" "$OUT/metrics.jsonl" 2>/dev/null
rm -rf "$OUT/run-fashion-rnvp"   # checkpoints are too large to come back
ls -la "$OUT"
