"""Declarative descriptions of the paper's tables and the runner that reproduces them."""
