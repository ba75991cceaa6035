"""The interface the operator and the worker share, and nothing else: the worker config schema,
paths, ports and metric names (`interface`), the model and GPU catalog the planner and the
simulator share (`catalog`), and the check of user-supplied vLLM arguments (`extra_args`, with
its policy and vLLM's option table). Depends on pydantic alone; imports neither side."""
