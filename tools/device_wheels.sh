#!/usr/bin/env bash
# Wheels of what `import jaxar` and benchmarks/suite.py need that the lent H200 machine's image
# lacks (it has jax, flax, optax, chex, orbax, numpy, scipy, matplotlib, absl, etils, protobuf,
# PyYAML, cloudpickle; not ml_collections, grain, array_record or portpicker), for its
# Python 3.12 on x86-64, into .whl/ (git-ignored through .git/info/exclude). There, first:
#   python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
#       --target /tmp/site .whl/*.whl && export PYTHONPATH=$PWD:/tmp/site
# (BENCHMARKS.md, "Running the suite on a lent GPU", has the whole command.)
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
PY=${PYTHON:-python3}
plat=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64; do plat+=(--platform "$p"); done
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat[@]}" -d .whl ml_collections==1.1.0 grain==0.2.18 array_record==0.8.6 portpicker==1.6.0
ls .whl
du -sh .whl
