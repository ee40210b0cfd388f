"""The graph nodes, one family per module: each a Function with forward and backward on arrays."""
