"""CDSPN: compact two-branch depth-wise separable network with DA-CSPN++ refinement."""
