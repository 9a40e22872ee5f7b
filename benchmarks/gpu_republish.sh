#!/usr/bin/env bash
# Republish a results folder on a lent GPU machine in one or two calls of at most ten
# minutes: the grid runs on a pool of worker processes sharing the GPU (--executor
# processes), into a folder that survives between calls on a warm machine, so a second
# call resumes where the first was stopped; what came out is packed into OUTDIR for the
# trip back (the device tool returns at most 8 files of 16 MiB).
#
#     benchmarks/gpu_republish.sh OUTDIR [l2i-bench run arguments...]
#     benchmarks/gpu_republish.sh $OUT --explainers all --dataset synth \
#         --folds 1,2,3,4,5 --seeds 0,1 --out-name 5-folds
#
# Before the call, here: benchmarks/gpu_wheels.sh fetches the packages the device image
# lacks into .whl/ (git-ignored; name it in the call's carry). There, this script
# installs them and the suite into /tmp/site when l2i_bench is not importable, runs the
# grid with --device cuda --executor processes --workers ${WORKERS:-8} within a budget
# of ${LIMIT:-560} s for the whole script (SIGTERM at the run's share of it: finished
# cells are kept and published; the exit status is the run's), and packs the
# results folder without listen/ (the report's Ogg copies of it travel) as
# OUTDIR/results.tar.gz.part-* (results/<out-name>/<dataset>/...). Back here, at the
# repository's root, replacing what the grid recomputed:
#     git rm -r -q results/5-folds/synth && cat FILES_AT/results.tar.gz.part-* | tar xzf -
# DEVICE=cpu WORKERS=2 rehearses it on a machine without a GPU (a 2-fold, 2-explainer
# grid of 4 clips: 42 s here, one part of 0.8 MB).
set -uo pipefail
usage="usage: benchmarks/gpu_republish.sh OUTDIR [run arguments...] [--out-name NAME]"
out=$(realpath -m "${1:?$usage}")  # absolute: the script changes directory below
shift
name=""
args=()
while (($#)); do
    case $1 in
    --out-name=*) name=${1#*=} ;;
    --out-name)
        (($# >= 2)) || { echo "$usage" >&2; exit 2; }
        name=$2
        shift
        ;;
    *) args+=("$1") ;;
    esac
    shift
done
mkdir -p "$out"
cd "$(dirname "$0")/.."
export PYTHONHASHSEED=0 MPLBACKEND=Agg PYTHONUNBUFFERED=1 CUBLAS_WORKSPACE_CONFIG=:4096:8
py=${PYTHON:-python3}
work=${WORK:-.gpu-work}  # inside the working tree: kept between calls on a warm machine
mkdir -p "$work"

if ! "$py" -c "import l2i_bench" 2>/dev/null; then
    site=/tmp/site
    if compgen -G ".whl/*.whl" >/dev/null; then
        "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target "$site" .whl/*.whl || exit 1
    fi
    "$py" -m pip install -q --no-index --no-deps --no-build-isolation --no-compile \
        --target "$site" . || exit 1
    export PYTHONPATH=$site${PYTHONPATH:+:$PYTHONPATH}
fi
"$py" -c "import torch, l2i_bench; print('torch', torch.__version__, 'cuda', \
torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"

# LIMIT is the whole script's budget: the run gets what the set-up left, less a
# reserve for the SIGTERM's publication and the packing (the device's limit is 600 s)
run_limit=$((${LIMIT:-560} - SECONDS - 60))
((run_limit > 30)) || { echo "no time left for the run (${SECONDS} s of set-up)" >&2; exit 1; }
results="$work/results${name:+/$name}"
timeout --signal=TERM --kill-after=30 "$run_limit" "$py" -m l2i_bench.cli run "${args[@]}" \
    --device "${DEVICE:-cuda}" --executor processes --workers "${WORKERS:-8}" \
    --out "$results" --cache-dir "$work/cache" --profile --quiet 2>&1 |
    grep -v -E 'it/s\]|clip/s\]|UserWarning|warnings.warn' | tee "$out/run.log" | tail -n 60
rc=${PIPESTATUS[0]}
echo "== run exit $rc after $SECONDS s (124: stopped at its ${run_limit} s limit; the" \
    "finished cells are published, and a second call resumes)" | tee -a "$out/run.log"
tar czf - --exclude=listen --exclude=.lock -C "$work" "results${name:+/$name}" |
    split -b 15m - "$out/results.tar.gz.part-"
parts=("$out"/results.tar.gz.part-*)
if ((${#parts[@]} > 7)); then  # with run.log, the device returns at most 8 files
    echo "warning: ${#parts[@]} parts; only 7 come back (keep listen/ out, or fewer cells)" >&2
fi
ls -l "$out"
exit "$rc"
