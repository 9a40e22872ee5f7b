#!/usr/bin/env bash
# The GPU benchmarks of issue 19 in one pass, for a machine lent for minutes: each step
# has its own time limit and log under OUTDIR, so a failing or slow step costs only
# itself, and the steps run in the order of what the README's GPU table needs most.
#
#     benchmarks/gpu_suite.sh OUTDIR
#
# Steps: device and versions; sparse NMF against scikit-learn on all the machine's CPU
# threads (two matrix sizes); explain time and peak memory of every explainer on synth;
# the perturbation metrics on CUDA; the README's main command with --device cuda;
# classifier training epochs; the metrics on the CPU threads; the front-end and
# classifier-forward pytest-benchmarks; the CUDA tests of the suite. The limits add to
# 640 s. DEVICE=cpu rehearses it on a machine without a GPU.
set -uo pipefail
out=${1:?usage: benchmarks/gpu_suite.sh OUTDIR}
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONHASHSEED=0 MPLBACKEND=Agg PYTHONUNBUFFERED=1 CUBLAS_WORKSPACE_CONFIG=:4096:8
py=${PYTHON:-python3}
cpus=$(nproc)
dev=${DEVICE:-cuda}
cache="$out/cache"

step() {  # step NAME SECONDS COMMAND...: run with a limit, log to OUTDIR/NAME.log
    local name=$1 limit=$2 started rc
    shift 2
    started=$(date +%s)
    timeout --kill-after=5 "$limit" "$@" >"$out/$name.log" 2>&1
    rc=$?
    printf '== %s: exit %s after %s s (limit %s s)\n' "$name" "$rc" \
        "$(($(date +%s) - started))" "$limit" | tee -a "$out/steps.txt"
    grep -v -E '^\s*$|it/s\]|clip/s\]|%\|' "$out/$name.log" | tail -n 40
}

step env 20 bash -c "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv; \
    $py -c 'import torch, sklearn, numpy; print(\"torch\", torch.__version__, \"cuda\", \
torch.version.cuda, torch.cuda.get_device_name(0) if torch.cuda.is_available() else \"no GPU\", \
\"sklearn\", sklearn.__version__, \"numpy\", numpy.__version__)'; nproc; uptime"
step nmf_20k 60 "$py" benchmarks/bench_nmf.py --device "$dev" --threads "$cpus" \
    --cols 20000 --iters 20 --repeats 2 --marginal
step nmf_100k 90 "$py" benchmarks/bench_nmf.py --device "$dev" --threads "$cpus" \
    --cols 100000 --iters 20 --repeats 1 --marginal
step explainers 150 "$py" benchmarks/bench_explainers.py --device "$dev" --clips 32 \
    --batch-size 16 --epochs 1 --cache-dir "$cache"
step metrics_cuda 60 "$py" benchmarks/bench_metrics.py --device "$dev" --threads "$cpus" \
    --rows 50 --repeats 2
step main_command 90 "$py" -m l2i_bench.cli run --explainers quick --dataset synth \
    --device "$dev" --out "$out/results" --cache-dir "$cache" --profile --no-report --quiet
step classifier 50 "$py" benchmarks/bench_classifier.py --device "$dev" --width 1.0 \
    --clips 400 --epochs 2
step metrics_cpu 40 "$py" benchmarks/bench_metrics.py --device cpu --threads "$cpus" \
    --rows 16 --repeats 1
step speed 40 "$py" -m pytest benchmarks/test_speed.py -q -p no:cacheprovider \
    --benchmark-enable -k "features or classifier_forward" --benchmark-columns=min,median,rounds
step cuda_tests 40 "$py" -m pytest -q -p no:cacheprovider -k "cuda or gpu" \
    tests/test_nmf.py tests/test_sanity.py
exit 0
