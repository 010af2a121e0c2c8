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
case "$venv" in /*) ;; *) venv="$PWD/$venv" ;; esac

cd "$(dirname "$0")/.."

if [ ! -x "$venv/bin/python" ]; then
    "${PYTHON:-python3}" -m venv "$venv"
fi
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -c constraints.txt -e '.[dev]'
# Spark's driver classes, archived once for this Java and pyspark (core/spark_cds.py): every later
# local Spark start maps them instead of loading them again. Skipped, with a note, without Java.
"$venv/bin/python" -m bettercat_assets.core.spark_cds > /dev/null 2>&1 \
    || echo "note: no Spark class-data archive built (is Java 17 installed?); Spark starts without it" >&2
