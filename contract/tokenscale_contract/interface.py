"""Constants the operator's renderer and the worker image share; change them only together.

The renderer builds the Deployment from these (container command, ports, mounts); the worker reads
the same values, and the tests check the Dockerfile's ENTRYPOINT against `WORKER_ENTRYPOINT`.
"""

from __future__ import annotations

from typing import Final

# The image's ENTRYPOINT: the gateway in front of vLLM. A list because that is what a container's
# `command` and the Dockerfile's JSON-form ENTRYPOINT are; copy it before changing it.
WORKER_ENTRYPOINT: Final[list[str]] = ["tokenscale-worker", "serve"]
# Public port: OpenAI API, /health, /ready and /metrics (gateway plus the engine's own metrics).
GATEWAY_PORT: Final = 8000
# The engine listens here on 127.0.0.1 only; nothing outside the pod talks to it directly.
ENGINE_PORT: Final = 8001
# Where the rendered worker configuration (JSON) is mounted; env `CONFIG_ENV` may carry it inline.
CONFIG_PATH: Final = "/etc/tokenscale/worker/config.json"
CONFIG_ENV: Final = "TOKENSCALE_WORKER_CONFIG"
# Where the tuning ConfigMap is mounted; the gateway polls it (no restart on change).
TUNING_PATH: Final = "/etc/tokenscale/tuning/tuning.json"
# Keys of the tuning file, written by the autoscaler.
TUNING_CAP_KEY: Final = "concurrencyCap"
TUNING_QUEUE_KEY: Final = "queueLimit"
# Models from pvc:// and s3:// sources are read from here (volume mount / init-container sync).
MODELS_DIR: Final = "/models"
# Readiness and liveness probe paths on GATEWAY_PORT.
READY_PATH: Final = "/ready"
HEALTH_PATH: Final = "/health"
METRICS_PATH: Final = "/metrics"
# Seconds the gateway's /ready and /health wait for the engine's own /health; the rendered
# probes' timeoutSeconds must stay above it.
ENGINE_HEALTH_TIMEOUT_S: Final = 2.0
# Extra constant metric labels for the simulator engine (k=v,k=v).
METRIC_LABELS_ENV: Final = "TOKENSCALE_METRIC_LABELS"
# The gateway's optional bearer token (rendered from spec.secrets.apiKey's Secret key).
API_KEY_ENV: Final = "TOKENSCALE_API_KEY"
# A replica across nodes (pipeline parallel on a LeaderWorkerSet): LWS's pod webhook sets these
# in every pod of a group; the leader is worker index 0 and serves, the others run headless.
LWS_GROUP_SIZE_ENV: Final = "LWS_GROUP_SIZE"
LWS_WORKER_INDEX_ENV: Final = "LWS_WORKER_INDEX"
LWS_LEADER_ADDRESS_ENV: Final = "LWS_LEADER_ADDRESS"
# torch.distributed's rendezvous on the leader (vLLM's --master-port default).
MULTI_NODE_MASTER_PORT: Final = 29501
