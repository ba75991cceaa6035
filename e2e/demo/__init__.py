"""The live demo (`make demo-live`, `tokenscale demo`): the operator on the local cluster with a
real Prometheus and the simulator fleet, through a scripted calm -> burst -> calm day
(docs/demo.md)."""
