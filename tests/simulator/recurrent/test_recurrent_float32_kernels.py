"""The float32 kernels (the path the app and the benchmark train with) against the
float64 numpy twin, at sizes that leave remainders after every vector loop (H = 19,
five inputs), for every cell: the vectorized gate loops, the input projection added in
place and the per-step input-weight and bias gradients must agree with the plain
definition to float32 accuracy."""

from __future__ import annotations

import numpy as np
import pytest

from simulator.recurrent import RecurrentNet, RecurrentSpec
from simulator.recurrent import reference as ref


@pytest.mark.parametrize("cell", ["rnn", "lstm", "lstm_no_forget", "gru"])
def test_float32_kernels_agree_with_the_float64_twin(cell):
    B, T, I, H, O = 5, 7, 5, 19, 2
    spec = RecurrentSpec(cell=cell, input_dim=I, hidden=H, output_dim=O, loss="mse")
    net = RecurrentNet(spec, seed=3, dtype=np.float32)
    rng = np.random.default_rng(4)
    X = rng.normal(size=(B, T, I)).astype(np.float32)
    y = rng.normal(size=(B, O)).astype(np.float32)
    value, grads = net.loss_and_gradients(X, y)
    params64 = {k: v.astype(np.float64) for k, v in net.params.items()}
    rv, rg, rh, rc = ref.loss_and_gradients(cell, "mse", params64, X.astype(np.float64),
                                            y.astype(np.float64))
    assert value == pytest.approx(rv, rel=1e-5)
    for name, g in grads.items():
        assert g.dtype == np.float32
        scale = np.abs(rg[name]).max()
        np.testing.assert_allclose(g, rg[name], rtol=0, atol=2e-5 * scale + 1e-8,
                                   err_msg=name)
    np.testing.assert_allclose(net.hidden_grad_norms, rh, rtol=1e-4)
    if cell.startswith("lstm"):
        np.testing.assert_allclose(net.cell_grad_norms, rc, rtol=1e-4)
