import pytest
import torch
import torch.nn.functional as F
from torch import nn

from memtx.nn.linear import Linear, prefixed_linear, row_linear


@pytest.mark.parametrize("shape", [(5,), (1, 1, 5), (3, 2, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_row_linear_equals_linear(shape, bias):
    torch.manual_seed(0)
    x, w = torch.randn(*shape, dtype=torch.float64), torch.randn(7, 5, dtype=torch.float64)
    b = torch.randn(7, dtype=torch.float64) if bias else None
    torch.testing.assert_close(row_linear(x, w, b), F.linear(x, w, b))


def test_linear_is_nn_linear_with_same_parameters():
    torch.manual_seed(0)
    ours = Linear(6, 4)
    torch.manual_seed(0)
    ref = nn.Linear(6, 4)
    assert isinstance(ours, nn.Linear) and ours.state_dict().keys() == ref.state_dict().keys()
    for a, b in zip(ours.state_dict().values(), ref.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    x = torch.randn(3, 6)
    assert torch.equal(ours(x), ref(x))  # eager: F.linear, bit for bit


def _traced_ops(module: nn.Module, x: torch.Tensor) -> tuple[list[str], torch.Tensor]:
    """The call_function targets dynamo traces for module(x), and its compiled output."""
    ops: list[str] = []

    def backend(gm, _inputs):
        ops.extend(str(n.target) for n in gm.graph.nodes if n.op == "call_function")
        return gm.forward

    torch._dynamo.reset()
    out = torch.compile(module, backend=backend, fullgraph=True)(x)
    return ops, out


@pytest.mark.parametrize("rows", [1, 3])
def test_linear_under_compile_uses_row_product_for_one_row_only(rows):
    torch.manual_seed(0)
    layer = Linear(8, 5)
    x = torch.randn(rows, 1, 8)
    ops, out = _traced_ops(layer, x)
    uses_blas = any("linear" in op for op in ops)
    assert uses_blas == (rows > 1), ops
    torch.testing.assert_close(out, F.linear(x, layer.weight, layer.bias))


def test_prefixed_linear_equals_linear_of_the_concatenation_with_no_prefix_gradient():
    torch.manual_seed(0)
    prefix = torch.randn(3, 5, 8, dtype=torch.float64)
    x = torch.randn(3, 4, 8, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 8, dtype=torch.float64, requires_grad=True)
    out = prefixed_linear(prefix, x, weight)
    assert torch.equal(out, F.linear(torch.cat([prefix, x], 1), weight))
    torch.autograd.gradcheck(lambda x, w: prefixed_linear(prefix, x, w), (x, weight))
    with pytest.raises(ValueError, match="needs a gradient"):
        prefixed_linear(prefix.requires_grad_(), x, weight)
