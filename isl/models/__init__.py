"""Encoders: CIFAR-stem ResNets, an STL-10 variant, a small ConvNet for digits, and the projection head."""
from .encoder import TRUNKS, Encoder, build_encoder

__all__ = ["TRUNKS", "Encoder", "build_encoder"]
