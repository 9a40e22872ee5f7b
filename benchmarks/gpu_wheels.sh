#!/usr/bin/env bash
# Fetch, here, the wheels of the packages the lent GPU machines' image lacks (device
# tool: KINDS.md lists what it has; Python 3.12, x86-64) into .whl/, git-ignored, for
# benchmarks/gpu_suite.sh and benchmarks/gpu_republish.sh: name .whl in the call's
# carry (.gitignore keeps it out of git). The versions are this environment's, so both
# machines run the same audio stack; torch, numpy, scipy, scikit-learn, pandas, numba
# and the rest are the image's (pooch needs platformdirs, which the image lacks).
#
#     benchmarks/gpu_wheels.sh            # then: du -sh .whl (about 10 MB)
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-.venv/bin/python}
mkdir -p .whl
packages=(librosa soundfile soxr audioread pooch platformdirs captum ptwt PyWavelets)
pins=()
for package in "${packages[@]}"; do
    version=$("$py" -c "import importlib.metadata as m, sys
try: print(m.version(sys.argv[1]))
except m.PackageNotFoundError: pass" "$package")
    [[ -n $version ]] && pins+=("$package==$version")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform any -d .whl "${pins[@]}"
ls .whl
