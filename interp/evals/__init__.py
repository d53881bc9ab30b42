"""Evaluations of decomposers: reconstruction (FVU, L0, dead/dense, CE and KL when spliced)."""
