"""The simulated cluster: a Kubernetes-compatible API server and simulated Flux controllers, over real HTTP."""
