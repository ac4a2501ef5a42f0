"""Declarative descriptions of the paper's tables and the runner that reproduces them.

`tables` (every cell: its run configuration and the paper's value), `budgets` (paper / small /
smoke), `runner` (the driver: train missing runs, resume interrupted ones, retry failed ones,
write DIR/table<KEY>.md), `executors` (where runs execute: this process, or Ray tasks on this
machine or a cluster), `progress` (runs done / total and the ETA), `report` (the Markdown) and
`cli` (`vaeprior reproduce TABLE --budget ... --seeds N --out DIR [--executor ray]`).
"""
