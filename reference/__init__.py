"""NumPy reference of Xu et al. (2019), float64 and readable: read it beside the paper."""
