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
# uv resolves and installs the same pinned set as pip would (constraints.txt pins every package),
# in about a third of pip's time on a cold cache and seconds on a warm one. pip is the fallback.
# --compile-bytecode as pip does: Dagster's run workers and Spark's Python workers start with
# `python -B`, so without .pyc files every such process compiles Dagster and MLflow again.
if "$venv/bin/pip" install --quiet "uv==$UV_VERSION"; then
    "$venv/bin/uv" pip install --quiet --compile-bytecode --python "$venv/bin/python" -c constraints.txt -e '.[dev]'
else
    echo "note: uv $UV_VERSION not installable; installing with pip" >&2
    "$venv/bin/pip" install --quiet -c constraints.txt -e '.[dev]'
fi
# Spark's driver classes, archived once for this Java and pyspark (core/spark_cds.py): every later
# local Spark start maps them instead of loading them again. Skipped, with a note, without Java.
"$venv/bin/python" -m bettercat_assets.core.spark_cds > /dev/null 2>&1 \
    || echo "note: no Spark class-data archive built (is Java 17 installed?); Spark starts without it" >&2
