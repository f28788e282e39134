"""A tiny in-memory target-vs-rest dataset for training tests (no files, deterministic)."""
import math

import torch
from torch.utils.data import Dataset


class ToyTargetRest(Dataset):
    """Stereo harmonic "voice" (target) over noise bursts (rest); ``silent`` items have no target."""

    def __init__(self, n_items=8, length=1600, sample_rate=8000, seed=0, silent=(), nan=()):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        t = torch.arange(length) / sample_rate
        for i in range(n_items):
            f0 = 150 + 200 * torch.rand(1, generator=g).item()
            voice = sum(torch.sin(2 * math.pi * f0 * k * t) / k for k in (1, 2, 3))
            voice = voice * (0.5 + 0.5 * torch.sin(2 * math.pi * 3 * t)) * 0.3
            pan = torch.rand(1, generator=g).item()
            target = torch.stack([voice * (1 - pan), voice * pan])
            rest = 0.2 * torch.randn(2, length, generator=g) * (torch.rand(1, 1, generator=g) + 0.5)
            if i in silent:
                target = torch.zeros_like(target)
            targets = torch.stack([target, rest]).float()
            mix = targets.sum(0)
            if i in nan:
                mix = mix.clone()
                mix[:, 10] = float("nan")
            self.items.append((mix, targets))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, idx):
        return self.items[idx]
