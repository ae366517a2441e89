"""A tiny mining problem shared by the mining tests: unit-norm bank, a few random positive pairs, G and a D whose
scores are spread away from 0.5 (so thresholds are not ties)."""
import torch
import torch.nn.functional as F

from isl.gan import Discriminator, Generator
from isl.positives import PositiveSets


def mining_setup(n=40, d=4, seed=0, noise_dim=2):
    g = torch.Generator().manual_seed(seed)
    bank = F.normalize(torch.randn(n, d, generator=g), dim=1)
    pos = PositiveSets(n)
    pos.add_pairs(torch.randint(0, n, (15,), generator=g), torch.randint(0, n, (15,), generator=g))
    torch.manual_seed(seed)
    D = Discriminator(d)
    with torch.no_grad():
        D.net[-1].weight.mul_(30.0)
    return bank, pos, Generator(d, noise_dim=noise_dim), D
