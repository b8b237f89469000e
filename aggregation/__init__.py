"""Aggregation strategies, one module per strategy; see DESIGN §6."""
