"""A tiny generated 2-class problem (1x8x8 images) and a tiny CNN: the training-loop tests run in seconds on a CPU."""

import torch
from torch import nn


class TinyCNN(nn.Module):
    def __init__(self, num_classes: int = 2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.AdaptiveAvgPool2d(2), nn.Flatten()
        )
        self.head = nn.Linear(32, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def toy_images(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Class 0: left half brighter by 40; class 1: right half; uniform noise 0..119 everywhere."""
    labels = torch.randint(0, 2, (n,), generator=generator)
    images = torch.randint(0, 120, (n, 1, 8, 8), generator=generator)
    images[labels == 0, :, :, :4] += 40
    images[labels == 1, :, :, 4:] += 40
    return images.to(torch.uint8), labels
