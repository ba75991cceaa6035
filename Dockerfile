# The operator image (the worker image is worker_image/Dockerfile).
FROM python:3.11.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY operator ./operator
COPY worker_image ./worker_image
RUN pip install . && rm -rf /src

# Non-root, matching the chart's runAsUser.
USER 65532:65532
WORKDIR /
ENTRYPOINT ["tokenscale"]
CMD ["run", "--all-namespaces"]
