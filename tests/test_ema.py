"""ModelEMA: the average of every floating-point tensor, integer buffers copied, decay warm-up."""
from __future__ import annotations

import torch
from torch import nn

from diffmf.engine.ema import ModelEMA


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(5, 3)
        self.norm = nn.BatchNorm1d(3)  # float buffers (running stats) + an integer one (num_batches_tracked)
        self.register_buffer("fp16_buf", torch.zeros(4, dtype=torch.float16))


def _perturb(net: _Net, g: torch.Generator) -> None:
    with torch.no_grad():
        for t in list(net.parameters()) + [net.norm.running_mean, net.fp16_buf]:
            t.add_(torch.randn(t.shape, generator=g).to(t.dtype))
        net.norm.num_batches_tracked += 3


def test_ema_matches_the_per_tensor_formula_over_several_updates():
    g = torch.Generator().manual_seed(0)
    net = _Net()
    ema = ModelEMA(net, decay=0.99)
    expect = {k: v.clone() for k, v in ema.module.state_dict().items()}
    for n in range(1, 6):
        _perturb(net, g)
        ema.update(net)
        d = min(0.99, (1.0 + n) / (10.0 + n))  # warm-up: 2/11, 3/12, ... then 0.99
        for k, v in net.state_dict().items():
            if v.dtype.is_floating_point:
                expect[k].mul_(d).add_(v.to(expect[k].dtype), alpha=1.0 - d)
            else:
                expect[k].copy_(v)
        got = ema.module.state_dict()
        for k in expect:
            torch.testing.assert_close(got[k], expect[k], msg=f"{k} after update {n}")  # dtype tolerances: fp16 differs by an ulp
    assert ema.updates == 5
    assert int(ema.module.norm.num_batches_tracked) == int(net.norm.num_batches_tracked) == 15
    assert ema.module.fp16_buf.dtype == torch.float16
    # the average is not the model: it lags behind it
    assert not torch.equal(ema.module.lin.weight, net.lin.weight)


def test_ema_state_round_trip():
    net = _Net()
    ema = ModelEMA(net, decay=0.9)
    _perturb(net, torch.Generator().manual_seed(1))
    ema.update(net)
    other = ModelEMA(_Net(), decay=0.5)
    other.load_state_dict(ema.state_dict())
    assert other.decay == 0.9 and other.updates == 1
    for k, v in ema.module.state_dict().items():
        assert torch.equal(other.module.state_dict()[k], v)
