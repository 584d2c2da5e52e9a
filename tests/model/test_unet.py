import pytest
import torch

from biounet.core.errors import ConfigError
from biounet.model.geometry import output_size
from biounet.model.unet import UNet, count_parameters


def test_default_unet_has_the_papers_31_million_parameters():
    model = UNet()
    assert round(count_parameters(model) / 1e6, 1) == 31.0
    assert (model.in_channels, model.num_classes, model.padding) == (1, 2, "valid")


@pytest.mark.parametrize("size", [188, 252, 316, 572])
def test_valid_padding_output_shapes(size):
    model = UNet(base_width=2)
    with torch.no_grad():
        out = model(torch.zeros(1, 1, size, size + 16))
    assert out.shape == (1, 2, output_size(size), output_size(size + 16))


@pytest.mark.parametrize("h,w", [(37, 53), (16, 17), (101, 64)])
def test_same_padding_keeps_odd_sizes(h, w):
    model = UNet(base_width=2, padding="same", in_channels=3, num_classes=5)
    with torch.no_grad():
        out = model(torch.randn(2, 3, h, w))
    assert out.shape == (2, 5, h, w)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("kwargs", [dict(), dict(padding="same", batch_norm=True, depth=3)])
def test_every_parameter_gets_a_gradient(kwargs):
    model = UNet(base_width=2, **kwargs)
    size = 188 if model.padding == "valid" else 24
    model(torch.randn(2, 1, size, size)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_he_initialisation_scale_and_seeded_generator():
    a = UNet(base_width=8, generator=torch.Generator().manual_seed(1))
    b = UNet(base_width=8, generator=torch.Generator().manual_seed(1))
    conv = a.downs[1][1][0]
    fan_in = conv.weight[0].numel()
    assert conv.weight.std().item() == pytest.approx((2 / fan_in) ** 0.5, rel=0.1)
    assert torch.equal(conv.weight, b.downs[1][1][0].weight)


@pytest.mark.parametrize("kwargs", [dict(padding="full"), dict(num_classes=1), dict(base_width=0)])
def test_bad_options_raise(kwargs):
    with pytest.raises(ConfigError):
        UNet(**kwargs)


def test_build_model_takes_every_section_and_gives_the_classes_then_the_affinities():
    from support import tiny_config

    from biounet.model.unet import build_model

    plain = build_model(tiny_config())
    assert (plain.in_channels, plain.num_classes) == (1, 2)
    # the default network is the one UNet builds from the same seed: nothing of the new options shows
    direct = UNet(1, 2, base_width=4, depth=2, generator=torch.Generator().manual_seed(0))
    for (k, a), (_, b) in zip(plain.state_dict().items(), direct.state_dict().items()):
        assert torch.equal(a, b), k
    deep = build_model(tiny_config(context=1, affinities="mws12", in_channels=3))
    assert (deep.in_channels, deep.num_classes) == (9, 14)
    assert deep(torch.zeros(1, 9, 60, 60)).shape == (1, 14, 20, 20)
