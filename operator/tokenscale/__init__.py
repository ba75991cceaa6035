"""tokenscale: an operator that holds vLLM inference services to their latency objective at the
lowest GPU cost."""
