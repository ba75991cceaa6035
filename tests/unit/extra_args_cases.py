"""The hostile extraArgs cases: (argv, the exact problems, whether the API server refuses it too).
The API server cannot tell an unknown option or a stray value (it has no option table): the
operator's status does. The first 14 are the hostile-input issue's, the rest this suite's own."""

from __future__ import annotations

GPUS = (
    "spec.resources.gpusPerReplica (a replica is gpusPerReplica GPUs of one node; spec.scaling "
    "adds replicas) instead"
)
PLAN = ", which tokenscale derives from the spec; remove it from extraArgs and set "
CODE = ", which makes vLLM read files or run code from outside the image ("
CONTRACT = ", which the worker contract fixes ("
SECRET = ", which would put a secret in plain text in the Deployment; remove it and use "
UNKNOWN = (
    " is not an option of vLLM 0.32.0, the version the worker image runs; check its spelling "
    "against `vllm serve --help=all`"
)
STRAY = (
    " is a value with no option before it to take it; put the option it belongs to in the item "
    "before it, e.g. '--seed', '7'"
)
SHELL = (
    "spec.engine.extraArgs takes one argument per list item: split '--flag value' into '--flag', "
    "'value'; shell syntax (; & | $ ` < >) is never interpreted"
)
REMOVE = "); remove it from extraArgs"

# (argv, the exact problems, whether the API server refuses it too). The API server cannot tell
# an unknown option or a stray value (it has no option table): the operator's status does.
ISSUE_CASES: list[tuple[list[str], list[str], bool]] = [
    (
        ["-qfp8"],
        [
            "spec.engine.extraArgs[0] ('-qfp8') sets --quantization (vLLM reads '-qfp8' as -q)"
            + PLAN
            + "spec.quantization.method instead"
        ],
        True,
    ),
    (
        ["--tensor-parallel=8"],
        [
            "spec.engine.extraArgs[0] ('--tensor-parallel=8') sets --tensor-parallel-size (vLLM "
            "reads '--tensor-parallel' as --tensor-parallel-size)" + PLAN + GPUS
        ],
        True,
    ),
    (
        ["--max-model=1000000"],
        [
            "spec.engine.extraArgs[0] ('--max-model=1000000') sets --max-model-len (vLLM reads "
            "'--max-model' as --max-model-len)" + PLAN + "spec.model.maxModelLen instead"
        ],
        True,
    ),
    (
        ["--gpu-memory=0.99"],
        [
            "spec.engine.extraArgs[0] ('--gpu-memory=0.99') sets --gpu-memory-utilization (vLLM "
            "reads '--gpu-memory' as --gpu-memory-utilization)"
            + PLAN
            + "spec.engine.gpuMemoryUtilization instead"
        ],
        True,
    ),
    (
        ["--hos=0.0.0.0"],
        [
            "spec.engine.extraArgs[0] ('--hos=0.0.0.0') sets --host (vLLM reads '--hos' as --host)"
            + CONTRACT
            + "the engine listens on 127.0.0.1 behind the gateway"
            + REMOVE
        ],
        True,
    ),
    (
        ["--por=9000"],
        [
            "spec.engine.extraArgs[0] ('--por=9000') sets --port (vLLM reads '--por' as --port)"
            + CONTRACT
            + "the engine port is 8001; the gateway serves 8000"
            + REMOVE
        ],
        True,
    ),
    (
        ["--trust-remote-code"],
        [
            "spec.engine.extraArgs[0] ('--trust-remote-code') sets --trust-remote-code"
            + CODE
            + "it runs Python code from the model repository; to allow that, set "
            "spec.engine.trustRemoteCode: true" + REMOVE
        ],
        True,
    ),
    (
        ["--pipeline-parallel-size", "4"],
        [
            "spec.engine.extraArgs[0] ('--pipeline-parallel-size') sets --pipeline-parallel-size"
            + PLAN
            + GPUS
        ],
        True,
    ),
    (
        ["-dp", "4"],
        ["spec.engine.extraArgs[0] ('-dp') sets --data-parallel-size" + PLAN + GPUS],
        True,
    ),
    (
        ["--config", "/etc/vllm.yaml"],
        [
            "spec.engine.extraArgs[0] ('--config') sets --config"
            + CODE
            + "it reads options from a file, past this guard"
            + REMOVE
        ],
        True,
    ),
    (
        ["--uds", "/tmp/engine.sock"],
        [
            "spec.engine.extraArgs[0] ('--uds') sets --uds"
            + CONTRACT
            + "the gateway reaches the engine over plain HTTP on 127.0.0.1:8001"
            + REMOVE
        ],
        True,
    ),
    (
        ["--allowed-local-media-path", "/"],
        [
            "spec.engine.extraArgs[0] ('--allowed-local-media-path') sets "
            "--allowed-local-media-path" + CODE + "it lets requests read the pod's files" + REMOVE
        ],
        True,
    ),
    (
        ["--hf-token", "hf_abc"],
        [
            "spec.engine.extraArgs[0] ('--hf-token') sets --hf-token"
            + SECRET
            + "spec.secrets.hubToken (a Secret reference)"
        ],
        True,
    ),
    (
        ["--api-key", "sk-abc"],
        [
            "spec.engine.extraArgs[0] ('--api-key') sets --api-key"
            + SECRET
            + "spec.secrets.apiKey (a Secret reference)"
        ],
        True,
    ),
]
OWN_CASES: list[tuple[list[str], list[str], bool]] = [
    (
        ["-t", "2"],
        [
            "spec.engine.extraArgs[0] ('-t') sets --tensor-parallel-size (vLLM reads '-t' as -tp)"
            + PLAN
            + GPUS
        ],
        True,
    ),
    (
        ["-tp=2"],
        ["spec.engine.extraArgs[0] ('-tp=2') sets --tensor-parallel-size" + PLAN + GPUS],
        True,
    ),
    (
        ["--tensor_parallel_size=2"],
        [
            "spec.engine.extraArgs[0] ('--tensor_parallel_size=2') sets --tensor-parallel-size "
            "(vLLM reads '--tensor_parallel_size' as --tensor-parallel-size)" + PLAN + GPUS
        ],
        True,
    ),
    (
        ["--max_model_len=4096"],
        [
            "spec.engine.extraArgs[0] ('--max_model_len=4096') sets --max-model-len (vLLM reads "
            "'--max_model_len' as --max-model-len)" + PLAN + "spec.model.maxModelLen instead"
        ],
        True,
    ),
    (
        ["--served_model_name=x"],
        [
            "spec.engine.extraArgs[0] ('--served_model_name=x') sets --served-model-name (vLLM "
            "reads '--served_model_name' as --served-model-name)"
            + PLAN
            + "spec.model.servedName instead"
        ],
        True,
    ),
    (
        ["--quant", "fp8"],
        [
            "spec.engine.extraArgs[0] ('--quant') may set --quantization (it abbreviates "
            "--quantization, --quantization-config)" + PLAN + "spec.quantization.method instead"
        ],
        True,
    ),
    (["-n", "2"], ["spec.engine.extraArgs[0] ('-n') sets --nnodes" + PLAN + GPUS], True),
    (
        ["--kv-cache-dt", "fp8"],
        [
            "spec.engine.extraArgs[0] ('--kv-cache-dt') may set --kv-cache-dtype (it abbreviates "
            "--kv-cache-dtype, --kv-cache-dtype-skip-layers)"
            + PLAN
            + "spec.engine.gpuMemoryUtilization (the plan sizes the KV cache from it) instead"
        ],
        True,
    ),
    (
        ["--no-enable-chunked"],
        [
            "spec.engine.extraArgs[0] ('--no-enable-chunked') sets --enable-chunked-prefill (vLLM "
            "reads '--no-enable-chunked' as --no-enable-chunked-prefill)"
            + PLAN
            + "spec.engine.enableChunkedPrefill instead"
        ],
        True,
    ),
    (
        ["--trust-rem"],
        [
            "spec.engine.extraArgs[0] ('--trust-rem') sets --trust-remote-code (vLLM reads "
            "'--trust-rem' as --trust-remote-code)"
            + CODE
            + "it runs Python code from the model repository; to allow that, set "
            "spec.engine.trustRemoteCode: true" + REMOVE
        ],
        True,
    ),
    (
        ["--chat-templ", "/t.jinja"],
        [
            "spec.engine.extraArgs[0] ('--chat-templ') may set --chat-template (it abbreviates "
            "--chat-template, --chat-template-content-format)"
            + CODE
            + "it reads a template file"
            + REMOVE
        ],
        True,
    ),
    (
        ["--tool-parser-pl", "p.py"],
        [
            "spec.engine.extraArgs[0] ('--tool-parser-pl') sets --tool-parser-plugin (vLLM reads "
            "'--tool-parser-pl' as --tool-parser-plugin)"
            + CODE
            + "it imports a Python file"
            + REMOVE
        ],
        True,
    ),
    (
        ["--hf_token=x"],
        [
            "spec.engine.extraArgs[0] ('--hf_token=x') sets --hf-token (vLLM reads '--hf_token' "
            "as --hf-token)" + SECRET + "spec.secrets.hubToken (a Secret reference)"
        ],
        True,
    ),
    (
        ["--api_k", "k"],
        [
            "spec.engine.extraArgs[0] ('--api_k') sets --api-key (vLLM reads '--api_k' as "
            "--api-key)" + SECRET + "spec.secrets.apiKey (a Secret reference)"
        ],
        True,
    ),
    (
        ["--revis", "main"],
        [
            "spec.engine.extraArgs[0] ('--revis') sets --revision (vLLM reads '--revis' as "
            "--revision)" + PLAN + "spec.model.revision instead"
        ],
        True,
    ),
    (
        ["--host.x", "1"],
        [
            "spec.engine.extraArgs[0] ('--host.x') sets --host"
            + CONTRACT
            + "the engine listens on 127.0.0.1 behind the gateway"
            + REMOVE
        ],
        True,
    ),
    (
        ["-h"],
        [
            "spec.engine.extraArgs[0] ('-h') sets --help"
            + CONTRACT
            + "vLLM would print its help and exit"
            + REMOVE
        ],
        True,
    ),
    (
        ["--disable-log-requests"],
        ["spec.engine.extraArgs[0] ('--disable-log-requests')" + UNKNOWN],
        False,
    ),
    (
        ["--max", "5"],
        [
            "spec.engine.extraArgs[0] ('--max') may set --max-model-len (it abbreviates "
            "--max-cpu-loras, --max-cudagraph-capture-size, --max-log-len, --max-logprobs, ...)"
            + PLAN
            + "spec.model.maxModelLen instead"
        ],
        True,
    ),
    (["7"], ["spec.engine.extraArgs[0] ('7')" + STRAY], False),
    (["-dp4"], ["spec.engine.extraArgs[0] ('-dp4')" + UNKNOWN], False),
    (["--omni"], ["spec.engine.extraArgs[0] ('--omni')" + UNKNOWN], False),
    (
        ["--tokeniz", "x"],
        [
            "spec.engine.extraArgs[0] ('--tokeniz') may set --tokenizer (it abbreviates "
            "--tokenizer, --tokenizer-mode, --tokenizer-revision)"
            + PLAN
            + "spec.model.source (the tokenizer ships with the model) instead"
        ],
        True,
    ),
    (
        ["--", "--port", "9000"],
        [
            "spec.engine.extraArgs[0] ('--')"
            + STRAY
            + "; spec.engine.extraArgs[1] ('--port') sets --port"
            + CONTRACT
            + "the engine port is 8001; the gateway serves 8000"
            + REMOVE
        ],
        True,
    ),
    (["--seed\x0b7"], [SHELL], True),
    (["--seed\xa07"], [SHELL], True),
    (
        ["--worker-cls", "evil.Worker"],
        [
            "spec.engine.extraArgs[0] ('--worker-cls') sets --worker-cls"
            + CODE
            + "it imports Python classes"
            + REMOVE
        ],
        True,
    ),
    (
        ["--logits-processors", "evil:LP"],
        [
            "spec.engine.extraArgs[0] ('--logits-processors') sets --logits-processors"
            + CODE
            + "it imports Python classes"
            + REMOVE
        ],
        True,
    ),
    (
        ["--middleware", "evil.mw"],
        [
            "spec.engine.extraArgs[0] ('--middleware') sets --middleware"
            + CODE
            + "it imports Python code"
            + REMOVE
        ],
        True,
    ),
    (
        ["--disable-log-stats"],
        [
            "spec.engine.extraArgs[0] ('--disable-log-stats') sets --disable-log-stats"
            + CONTRACT
            + "the autoscaler reads the engine's metrics"
            + REMOVE
        ],
        True,
    ),
    (
        ["--download-dir", "/tmp"],
        [
            "spec.engine.extraArgs[0] ('--download-dir') sets --download-dir"
            + CONTRACT
            + "weights come from spec.model.source"
            + REMOVE
        ],
        True,
    ),
    (
        ["--ssl-keyfile", "/k.pem"],
        [
            "spec.engine.extraArgs[0] ('--ssl-keyfile') sets --ssl-keyfile"
            + CONTRACT
            + "the gateway reaches the engine over plain HTTP on 127.0.0.1:8001"
            + REMOVE
        ],
        True,
    ),
    (
        ["-pp", "2"],
        ["spec.engine.extraArgs[0] ('-pp') sets --pipeline-parallel-size" + PLAN + GPUS],
        True,
    ),
    (["-r", "1"], ["spec.engine.extraArgs[0] ('-r') sets --node-rank" + PLAN + GPUS], True),
    (
        ["--model", "evil/model"],
        ["spec.engine.extraArgs[0] ('--model') sets --model" + PLAN + "spec.model.source instead"],
        True,
    ),
    (
        ["--dtype=float32"],
        [
            "spec.engine.extraArgs[0] ('--dtype=float32') sets --dtype"
            + PLAN
            + "spec.model.dtype instead"
        ],
        True,
    ),
    (
        ["--enable-prefix-caching"],
        [
            "spec.engine.extraArgs[0] ('--enable-prefix-caching') sets --enable-prefix-caching"
            + PLAN
            + "spec.engine.enablePrefixCaching instead"
        ],
        True,
    ),
    (
        ["--max-num-seqs", "4096"],
        [
            "spec.engine.extraArgs[0] ('--max-num-seqs') sets --max-num-seqs"
            + PLAN
            + "spec.engine.maxNumSeqs instead"
        ],
        True,
    ),
    (
        ["--gpu_mem=0.99"],
        [
            "spec.engine.extraArgs[0] ('--gpu_mem=0.99') sets --gpu-memory-utilization (vLLM "
            "reads '--gpu_mem' as --gpu-memory-utilization)"
            + PLAN
            + "spec.engine.gpuMemoryUtilization instead"
        ],
        True,
    ),
    (
        ["--kv-cache-memory-bytes", "1G"],
        [
            "spec.engine.extraArgs[0] ('--kv-cache-memory-bytes') sets --kv-cache-memory-bytes"
            + PLAN
            + "spec.engine.gpuMemoryUtilization (the plan sizes the KV cache from it) instead"
        ],
        True,
    ),
    (
        ["--num-gpu-blocks-override", "99999"],
        [
            "spec.engine.extraArgs[0] ('--num-gpu-blocks-override') sets --num-gpu-blocks-override"
            + PLAN
            + "spec.engine.gpuMemoryUtilization (the plan sizes the KV cache from it) instead"
        ],
        True,
    ),
    (
        ["--headless"],
        [
            "spec.engine.extraArgs[0] ('--headless') sets --headless"
            + CONTRACT
            + "the gateway needs the engine's API server"
            + REMOVE
        ],
        True,
    ),
    (
        ["--root-path", "/x"],
        [
            "spec.engine.extraArgs[0] ('--root-path') sets --root-path"
            + CONTRACT
            + "the gateway forwards the OpenAI paths unprefixed"
            + REMOVE
        ],
        True,
    ),
    (
        ["--generation-config", "/cfg"],
        [
            "spec.engine.extraArgs[0] ('--generation-config') sets --generation-config"
            + CODE
            + "it reads a generation config from a folder"
            + REMOVE
        ],
        True,
    ),
    (
        ["--tokenizer", "/etc"],
        [
            "spec.engine.extraArgs[0] ('--tokenizer') sets --tokenizer"
            + PLAN
            + "spec.model.source (the tokenizer ships with the model) instead"
        ],
        True,
    ),
]
