"""Speed benchmarks (pytest-benchmark) and the paper-reproduction harness."""
