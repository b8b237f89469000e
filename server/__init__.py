"""Coordinator ServerApp and gRPC gateway (relayer, blob store, queries); see DESIGN §4-5."""
