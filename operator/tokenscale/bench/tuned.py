"""The baselines' searched settings (threshold, cap option), written from the output of
`python -m tokenscale.bench.tune` (docs/benchmarks.md gives the command and the date).

GLOBAL     one setting per baseline: the cheapest reaching 99% on every training workload
           (`sets.training`); None where no setting reached 99% on all of them.
HINDSIGHT  per (workload key, baseline): the cheapest at >= 99% on that workload alone, tuned
           with hindsight (the strongest that baseline can be there). Workload key:
           "<trace name>|<seed>".
"""

from __future__ import annotations

GLOBAL: dict[str, tuple[float, str] | None] = {
    "hpa": (30.67, "vllm"),
    "hpa-queue": None,
    "kpa": (28.54, "vllm"),
    "kpa-2s": (33.94, "vllm"),
    "apa": (26.91, "vllm"),
    "apa-2024": (22.63, "vllm"),
}
HINDSIGHT: dict[tuple[str, str], tuple[float, str]] = {
    ("embedded-day|1", "hpa"): (30.67, "vllm"),
    ("embedded-day|1", "kpa"): (40.36, "vllm"),
    ("embedded-day|1", "kpa-2s"): (40.36, "vllm"),
    ("embedded-day|1", "apa"): (32.0, "vllm"),
    ("embedded-day|1", "apa-2024"): (26.91, "vllm"),
    ("long-output-day|1", "hpa"): (48.0, "vllm"),
    ("long-output-day|1", "kpa"): (48.0, "vllm"),
    ("long-output-day|1", "kpa-2s"): (48.0, "vllm"),
    ("long-output-day|1", "apa"): (32.0, "vllm"),
    ("long-output-day|1", "apa-2024"): (32.0, "vllm"),
    ("AzureLLMInferenceTrace_conv x6|1", "hpa"): (30.67, "vllm"),
    ("AzureLLMInferenceTrace_conv x6|1", "kpa"): (28.54, "vllm"),
    ("AzureLLMInferenceTrace_conv x6|1", "kpa-2s"): (33.94, "vllm"),
    ("AzureLLMInferenceTrace_conv x6|1", "apa"): (26.91, "vllm"),
    ("AzureLLMInferenceTrace_conv x6|1", "apa-2024"): (22.63, "vllm"),
}
