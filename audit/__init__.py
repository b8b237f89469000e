"""Audit of a task from contract queries and logs alone: rounds, votes, payouts and their verification (DESIGN §8)."""
