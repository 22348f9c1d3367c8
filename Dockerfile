# tomcat-fleet: the flows and their dependencies: the flow-run image of the
# tomcat-fleet-docker work pool (the Docker worker that starts it runs on a Docker host, with
# prefect-docker installed there, not in this image), or a one-shot run.
#
#   docker build -t tomcat-fleet .
#   docker run --rm -e PREFECT_API_URL=... -v "$PWD/logs:/data/logs" tomcat-fleet deploy --instances 4
#
# No credentials are baked in: AWS credentials come from the AwsCredentials block named by
# TOMCAT_FLEET_AWS_CREDENTIALS_BLOCK, Prefect's from PREFECT_API_URL/PREFECT_API_KEY at run
# time. The base is pinned by its full version tag (pin by digest where a registry is
# reachable: python:3.11.10-slim-bookworm@sha256:...).
ARG PYTHON_IMAGE=python:3.11.10-slim-bookworm

# ---- build: a virtualenv with the project and its dependencies -----------------------
FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY blocks ./blocks
COPY flows ./flows
COPY sandbox ./sandbox
COPY tasks ./tasks
# the sandbox and the plot are extras: the benchmark deployments run on them; build a
# slimmer AWS-only image with --build-arg EXTRAS=aws-only (no such extra: runtime deps only)
ARG EXTRAS=sandbox,bench
RUN pip install --no-cache-dir "./[${EXTRAS}]" \
    && pip uninstall --yes pip \
    && find /opt/venv -name '__pycache__' -prune -exec rm -rf {} +

# ---- final: the venv, the code Prefect loads entrypoints from, a non-root user --------
FROM ${PYTHON_IMAGE}
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONPATH=/app \
    PREFECT_SERVER_ANALYTICS_ENABLED=false \
    PREFECT_HOME=/data/prefect \
    TOMCAT_FLEET_LOG_DIR=/data/logs \
    TOMCAT_FLEET_STATE_DIR=/data/state
RUN useradd --create-home --uid 10001 --user-group app \
    && mkdir -p /data/logs /data/state /data/prefect \
    && chown -R app:app /data
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY prefect.yaml pyproject.toml ./
COPY blocks ./blocks
COPY flows ./flows
COPY tasks ./tasks
COPY sandbox ./sandbox
COPY benchmarks ./benchmarks
COPY docker/entrypoint.sh /usr/local/bin/tomcat-fleet-entrypoint
USER 10001:10001
# logs (per-chunk logs, aggregate.log, one-shot run output) and state (key, inventory,
# known_hosts) belong on mounted volumes
VOLUME ["/data/logs", "/data/state"]
ENTRYPOINT ["/usr/local/bin/tomcat-fleet-entrypoint"]
CMD ["help"]
