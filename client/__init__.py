"""Flower ClientApp, node identity and voter logic; see DESIGN §5."""
