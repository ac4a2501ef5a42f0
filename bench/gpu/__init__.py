"""GPU-only scripts: device ceilings, training speed, and the one-call GPU run (run_all.sh)."""
