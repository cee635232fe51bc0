"""The lecture's Keras convolutional autoencoder, layer for layer, in PyTorch.

Keras (channels last)                     here (channels first), for 28x28x1 input
Conv2D(32, 3, relu)          26x26x32     Conv2d(C, 32, 3) + ReLU
MaxPooling2D(2)              13x13x32     MaxPool2d(2)
Conv2D(64, 3, relu)          11x11x64     Conv2d(32, 64, 3) + ReLU
MaxPooling2D(2)              5x5x64       MaxPool2d(2)
Conv2D(64, 3, relu)          3x3x64       Conv2d(64, 64, 3) + ReLU
Flatten, Dense(49, relu)     49           Flatten, Linear(576, 49) + ReLU
Reshape(7, 7, 1)             7x7x1        Unflatten to 1x7x7
Conv2DTranspose(64, 3, s2, same, relu)    ConvTranspose2d(1, 64, 3, 2, pad 1, out pad 1) + ReLU
BatchNormalization           14x14x64     BatchNorm2d(64)
Conv2DTranspose(64, 3, s2, same, relu)    ConvTranspose2d(64, 64, ...) + ReLU, 28x28x64
BatchNormalization                        BatchNorm2d(64)
Conv2DTranspose(32, 3, same, relu)        ConvTranspose2d(64, 32, 3, pad 1) + ReLU, 28x28x32
Conv2D(1, 3, same)           28x28x1      Conv2d(32, C, 3, pad 1), linear

Parameters: 140,594 trainable plus 256 batch-norm running statistics (Keras: 140,850).
Batch norm uses Keras' eps (1e-3). Its running-statistics momentum is an option: Keras'
0.99 (PyTorch's 0.01) leaves the statistics near their initial values for the first few
hundred steps, so evaluation-mode reconstructions stay blank for an epoch or more, and even
PyTorch's 0.1 lags the fast-changing weights of the first epoch (val/loss 79.6 against a
train/loss of 40 after one epoch of mnist_5k). The default here is 0.5: val/loss 38.5
after that epoch, and 21.0 against 0.1's 24.3 after ten.
Other square sizes divisible by 4 work too: the code has (size/4)² units.

The variational autoencoder reuses both halves: ``ConvGaussianEncoder`` (genlab.nn.gaussian)
takes the convolutions up to Flatten, and ``KerasConvDecoder(latent_dim=...)`` puts a linear
layer from its codes to the decoder's (size/4)² inputs.
"""

from __future__ import annotations

from torch import Tensor, nn

from genlab.errors import ConfigError
from genlab.nn.network import Network


def _valid_conv_size(size: int) -> int:
    size = (size - 2) // 2  # conv 3x3 valid, then pool 2
    size = (size - 2) // 2
    return size - 2


def code_size(image_size: int) -> int:
    # Below 20 pixels the three valid convolutions leave no feature map at all.
    if image_size % 4 or image_size < 20:
        raise ConfigError(
            f"conv models need data.image_size divisible by 4 and at least 20 (got {image_size}); "
            "try data.image_size=28 or 32"
        )
    return (image_size // 4) ** 2


def conv_feature_size(image_size: int) -> int:
    """How many features ``keras_conv_features`` gives for square images of ``image_size``."""
    code_size(image_size)
    return 64 * _valid_conv_size(image_size) ** 2


def keras_conv_features(in_channels: int) -> list[nn.Module]:
    """The Keras encoder's convolutions and pooling, flattened: x [B, C, S, S] ->
    [B, conv_feature_size(S)]."""
    return [
        nn.Conv2d(in_channels, 32, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(64, 64, 3),
        nn.ReLU(),
        nn.Flatten(),
    ]


class KerasConvEncoder(Network):
    """x [B, C, S, S] -> h [B, (S/4)²]: the convolutions, then the dense ReLU code layer."""

    def __init__(self, *, in_channels: int, image_size: int) -> None:
        super().__init__()
        self.latent_dim = code_size(image_size)
        self.net = nn.Sequential(
            *keras_conv_features(in_channels),
            nn.Linear(conv_feature_size(image_size), self.latent_dim),
            nn.ReLU(),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)


class KerasConvDecoder(Network):
    """h [B, latent_dim] -> logits [B, C, S, S].

    ``latent_dim=None`` (the autoencoder): the code is the decoder's (S/4)² inputs, reshaped
    to one S/4 x S/4 map. A number (the VAE): a linear layer first maps codes of that size
    to those inputs.
    """

    def __init__(
        self,
        *,
        out_channels: int,
        image_size: int,
        bn_momentum: float = 0.5,
        latent_dim: int | None = None,
    ) -> None:
        super().__init__()
        inputs = code_size(image_size)
        self.latent_dim = inputs if latent_dim is None else latent_dim
        side = image_size // 4
        projection = [] if latent_dim is None else [nn.Linear(latent_dim, inputs)]
        self.net = nn.Sequential(
            *projection,
            nn.Unflatten(1, (1, side, side)),
            nn.ConvTranspose2d(1, 64, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(64, momentum=bn_momentum, eps=1e-3),
            nn.ConvTranspose2d(64, 64, 3, stride=2, padding=1, output_padding=1),
            nn.ReLU(),
            nn.BatchNorm2d(64, momentum=bn_momentum, eps=1e-3),
            nn.ConvTranspose2d(64, 32, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(32, out_channels, 3, padding=1),
        )

    def forward(self, h: Tensor) -> Tensor:
        return self.net(h)
