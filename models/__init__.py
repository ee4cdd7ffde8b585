"""The victim networks of the gradient-leakage literature, built by name.

``build("lenet-zhu", (3, 32, 32), 10)`` or with options, ``build("convnet:width=16,norm=group",
...)``; ``torchvision:NAME`` builds any untrained torchvision classifier.
"""

from __future__ import annotations

import dataclasses
import inspect
import typing
from typing import Any, Callable

import torch
from torch import nn

from gradleak.errors import GradleakError
from gradleak.models.check import check_twice_differentiable
from gradleak.models.convnet import ConvNet
from gradleak.models.lenet import LeNetZhu
from gradleak.models.mlp import MLP
from gradleak.models.resnet import ResNet20, resnet18
from gradleak.models.torchvision_models import torchvision_model
from gradleak.registry import Registry
from gradleak.spec import make_config, parse_spec

MODELS: Registry[Callable[..., nn.Module]] = Registry("model")
MODELS.register("lenet-zhu")(LeNetZhu)
MODELS.register("convnet")(ConvNet)
MODELS.register("resnet18")(resnet18)
MODELS.register("resnet20")(ResNet20)
MODELS.register("mlp")(MLP)

TORCHVISION_PREFIX = "torchvision:"

__all__ = ["MODELS", "build", "check_twice_differentiable", "model_names"]


def model_names() -> list[str]:
    return MODELS.names() + [TORCHVISION_PREFIX + "NAME"]


def build(
    name: str,
    in_shape: tuple[int, int, int],
    num_classes: int,
    seed: int | None = None,
    **options: Any,
) -> nn.Module:
    """Build model ``name`` (optionally ``name:key=value,...``) for ``in_shape`` = (C, H, W).

    ``seed`` makes the initial weights reproducible without touching the global RNG.
    """
    in_shape = tuple(int(s) for s in in_shape)
    if len(in_shape) != 3:
        raise GradleakError(f"in_shape must be (channels, height, width), not {in_shape}")
    with torch.random.fork_rng(devices=[]):
        if seed is not None:
            torch.manual_seed(seed)
        if name.startswith(TORCHVISION_PREFIX):
            if options:
                raise GradleakError(f"{name} takes no options")
            return torchvision_model(name[len(TORCHVISION_PREFIX):], in_shape, num_classes)
        spec = parse_spec(name)
        factory = MODELS.get(spec.name)
        params = {**spec.params, **options}
        config = make_config(_options_class(factory), params, f"model {spec.name!r}")
        try:
            return factory(in_shape, num_classes, **dataclasses.asdict(config))
        except ValueError as exc:
            raise GradleakError(f"model {spec.name!r}: {exc}") from None


def _options_class(factory: Callable[..., nn.Module]) -> type:
    """A dataclass of the factory's keyword options, so specs are typed and checked like configs."""
    target = factory.__init__ if inspect.isclass(factory) else factory
    hints = typing.get_type_hints(target, include_extras=True)
    fields = [
        (name, hints[name], dataclasses.field(default=param.default))
        for name, param in inspect.signature(target).parameters.items()
        if param.default is not inspect.Parameter.empty
    ]
    return dataclasses.make_dataclass(f"{getattr(factory, '__name__', 'Model')}Options", fields)
