"""The gRPC gateway (DESIGN §4): service, relayer with its write-ahead log, blob store, ledger, client, proto."""
