"""gRPC definition of the gateway (gateway.proto) and its generated, committed stubs."""
