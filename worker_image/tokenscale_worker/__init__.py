"""tokenscale worker: the vLLM launcher, the gateway in front of the engine, the simulator."""
