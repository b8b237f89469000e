"""The coordinator: ServerApp, GovernedStrategy, Flower helpers and ``fedledger coordinate`` (DESIGN §5)."""
