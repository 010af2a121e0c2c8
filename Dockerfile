# bettercat: one image for every process of the production profile (deploy/docker-compose.yaml).
# The default command serves the Dagster code location over gRPC on port 4000; compose overrides
# the command to run the Dagster webserver, the Dagster daemon and the MLflow tracking server.
#
#   docker build --build-arg BETTERCAT_GIT_SHA=$(git rev-parse HEAD) -t bettercat .
#
# bookworm on purpose: Debian trixie (the newer python:3.11-slim) no longer packages OpenJDK 17.
FROM python:3.11-slim-bookworm

# Java for PySpark's driver (local[*] or a cluster master); procps for Spark's launch scripts.
RUN mkdir -p /usr/share/man/man1 \
 && apt-get update \
 && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps \
 && rm -rf /var/lib/apt/lists/*

# Non-root user. The directories that compose mounts named volumes on are created here, owned by
# that user, so a fresh volume inherits the ownership.
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin bettercat \
 && mkdir -p /opt/bettercat /opt/dagster/dagster_home/storage /data /mlartifacts /var/lib/bettercat \
 && chown -R bettercat:bettercat /opt/dagster /data /mlartifacts /var/lib/bettercat

WORKDIR /opt/bettercat
ENV PIP_NO_CACHE_DIR=1 \
    UV_NO_CACHE=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1

# Install with deploy/install.sh: the very script `make install` runs (and so .ci/run, which
# calls make), i.e. the same `uv pip install -c constraints.txt -e '.[dev]'` (pip as the
# fallback) against the same pins. bettercat_assets_tests/test_deploy_config.py fails if
# either side stops calling it.
# The dependencies are installed against a stub package so this layer is cached across code
# changes; the editable install points `bettercat_assets` at /opt/bettercat/bettercat_assets,
# so the sources copied next are what runs.
COPY pyproject.toml constraints.txt README.md ./
COPY deploy/install.sh deploy/install.sh
RUN mkdir bettercat_assets \
 && touch bettercat_assets/__init__.py \
 && PYTHON=python3 deploy/install.sh /opt/venv

COPY bettercat_assets ./bettercat_assets
COPY clients.yaml ./
# The Spark driver's class-data archive (install.sh skipped it: the stub package had no code).
RUN /opt/venv/bin/python -m bettercat_assets.core.spark.build_cds
# The forest kernel compiled ahead of time, so Spark workers skip numba (-120 MB each); needs a
# C compiler, which this slim image lacks: the workers then use numba's JIT, as before.
RUN /opt/venv/bin/python -m bettercat_assets.core.model.build_forest_kernel \
 || echo "note: no compiled forest kernel (no C compiler); Spark workers use numba's JIT"

# No .git in the image: the code version recorded with every model comes from here.
ARG BETTERCAT_GIT_SHA=unknown
ENV PATH=/opt/venv/bin:$PATH \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PYSPARK_DRIVER_PYTHON=/opt/venv/bin/python \
    DAGSTER_HOME=/opt/dagster/dagster_home \
    BETTERCAT_HOME=/var/lib/bettercat \
    DATA_PREFIX=/data \
    BETTERCAT_GIT_SHA=${BETTERCAT_GIT_SHA}

USER bettercat

EXPOSE 4000
HEALTHCHECK --interval=15s --timeout=10s --start-period=90s --retries=5 \
    CMD ["dagster", "api", "grpc-health-check", "-p", "4000"]

# `code-server start` (not `api grpc`) so "Reload" in the UI re-imports the definitions, e.g.
# after a client is added to clients.yaml, without restarting the container.
CMD ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", "4000", \
     "-m", "bettercat_assets.definitions", "-a", "defs", "--location-name", "bettercat"]
