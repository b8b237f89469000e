"""Two products side by side: the gRPC gateway (``server/gateway/``) and the coordinator (``server/coordinator/``)."""
