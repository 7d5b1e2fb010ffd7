"""`harness serve`: the local reference endpoint of the seed API (sampler + fault injection)."""
