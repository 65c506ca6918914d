"""What several test modules need: networks with non-trivial batch norms, in float64."""
import torch
from torch import nn


def randomized(net, seed=0, *, linear_bias=False):
    """float64, eval mode, batch norms with random affine parameters and running statistics
    (and, with ``linear_bias``, random biases in the linear layers)."""
    gen = torch.Generator().manual_seed(seed)
    net = net.double().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = 0.5 + torch.rand(n, generator=gen, dtype=torch.float64)
            m.bias.data = 0.2 * torch.randn(n, generator=gen, dtype=torch.float64)
            m.running_mean = 0.2 * torch.randn(n, generator=gen, dtype=torch.float64)
            m.running_var = 0.5 + torch.rand(n, generator=gen, dtype=torch.float64)
        if linear_bias and isinstance(m, nn.Linear):
            m.bias.data = torch.randn(m.out_features, generator=gen, dtype=torch.float64)
    return net
