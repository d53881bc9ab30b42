"""Old home of the neuron -> residual readout; it lives in ``interp.models.readout`` (re-exported)."""

from interp.models.readout import mlp_out_weight, post_mlp_norm, to_residual

__all__ = ["mlp_out_weight", "post_mlp_norm", "to_residual"]
