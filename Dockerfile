# The operator image (the worker image is worker_image/Dockerfile).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY contract ./contract
# The operator and the contract it shares with the worker: no worker, no simulator (the `bench`
# extra is left out).
RUN pip install ./contract . && rm -rf /src \
    && python -c "import tokenscale.cli, tokenscale.handlers.lifecycle" \
    && ! python -c "import tokenscale_worker" 2>/dev/null

# Non-root, matching the chart's runAsUser.
USER 65532:65532
WORKDIR /
ENTRYPOINT ["tokenscale"]
CMD ["run", "--all-namespaces"]
