"""Deploying the contracts, local chain helpers and deployment manifests; see DESIGN §1, §3."""
