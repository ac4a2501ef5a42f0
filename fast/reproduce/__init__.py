"""Declarative descriptions of the paper's tables and the runner that reproduces them.

`tables` (every cell: its run configuration and the paper's value), `budgets` (paper / small /
smoke), `runner` (train missing runs, resume interrupted ones, write DIR/table<KEY>.md) and
`cli` (`vaeprior reproduce TABLE --budget ... --seeds N --out DIR`).
"""
