"""Simulation tasks, partitioners, attackers, scenarios and reports; see DESIGN §7."""
