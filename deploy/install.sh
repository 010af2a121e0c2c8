#!/usr/bin/env bash
# The one way bettercat gets installed: `make install` (and so .ci/run) and the Dockerfile both
# call this script, so the laptop, CI and the image get the same pinned dependencies.
#
#   deploy/install.sh [VENV]     # VENV defaults to .venv; created with $PYTHON (python3) if absent
#
# Run from anywhere; installs the checkout this script belongs to, with the exact versions in
# constraints.txt.
set -euo pipefail

venv="${1:-.venv}"
UV_VERSION=0.9.30
case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac

cd "$(dirname "$0")/.."

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
# uv resolves and installs the same pinned set as pip would (constraints.txt pins every package).
# It tries its cache alone first: online, uv revalidates every package, and the registry answers
# for pyspark's sdist as modified every time, so uv downloads and builds pyspark again (~25 s)
# even with the built wheel in its cache. A cache that lacks a pin makes the offline try fail at
# once, and the online install runs. pip is the fallback when uv itself is not installable.
uv_install() {
    "$venv/bin/uv" pip install --quiet --python "$venv/bin/python" -c constraints.txt -e '.[dev]' "$@"
}
# -qq: errors only. A host's pip.conf may name extra indexes that do not exist; pip warns about
# each of them on every fresh venv, which is noise before the demo's own lines.
if "$venv/bin/pip" install -qq "uv==$UV_VERSION"; then
    uv_install --offline 2>/dev/null || uv_install
else
    echo "note: uv $UV_VERSION not installable; installing with pip" >&2
    "$venv/bin/pip" install --quiet --no-compile -c constraints.txt -e '.[dev]'
fi
# Bytecode for every installed module, as pip compiles it: Dagster's run workers and Spark's
# Python workers start with `python -B`, so without .pyc files every such process compiles Dagster
# and MLflow again. It runs beside the Spark class-data archive below (both are CPU-bound, on
# different cores). A file that does not compile is skipped, as pip and uv skip it; the
# install does not fail for it.
site_packages=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$venv/bin/python" -m compileall -q -j 0 "$site_packages" > /dev/null 2>&1 &
compiling=$!
# Spark's driver classes, archived once for this Java and pyspark (core/spark/build_cds.py): every later
# local Spark start maps them instead of loading them again. Skipped, with a note, without Java.
"$venv/bin/python" -m bettercat_assets.core.spark.build_cds > /dev/null 2>&1 \
    || echo "note: no Spark class-data archive built (is Java 17 installed?); Spark starts without it" >&2
# The forest's prediction kernels (dense, and sparse for text features) and the featurizer's,
# compiled ahead of time (core/aot_kernels.py): Spark's Python workers then score without
# importing numba (~120 MB less per worker). Skipped, with a note, without a C compiler; workers
# then use the JIT for the forest and numpy for the features.
"$venv/bin/python" -m bettercat_assets.core.model.build_forest_kernel > /dev/null 2>&1 \
    || echo "note: no compiled forest kernel built (is a C compiler installed?); workers use numba's JIT" >&2
wait "$compiling" || true
