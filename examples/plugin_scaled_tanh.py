"""A plugin op, as docs/guide.md shows it: tanh(x) * s, from ONNX's com.example ScaledTanh.

    ember compile model.onnx -o model.engine --load examples/plugin_scaled_tanh.py
"""

import numpy as np

from ember.plugins import elementwise_op


@elementwise_op("example.scaled_tanh", version="1.0", operands=("x", "s"),
                cuda="return tanh(x) * s;", onnx=("com.example", "ScaledTanh"))
def scaled_tanh(x, s):
    """tanh(x) * s, broadcast."""
    return np.tanh(x) * s
