import numpy as np
import torch

from verl_async_vla.plumbing.wire import weights_from_wire, weights_to_wire


def test_weights_travel_as_numpy_and_come_back_exactly_in_every_dtype():
    weights = {
        "w": torch.randn(3, 4),
        "half": torch.randn(5).to(torch.bfloat16),
        "steps": torch.arange(4),
        "payload": torch.zeros(8, dtype=torch.uint8),
    }
    wire = weights_to_wire(weights)
    assert all(
        isinstance(array, np.ndarray) for array, _ in wire.values()
    )  # out-of-band in Ray's object store
    for array, _ in wire.values():
        array.flags.writeable = False  # as they arrive from shared memory
    back = weights_from_wire(wire)
    for name, t in weights.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t)
