"""Governance: the constitution, the decision path and its enforcement points."""
