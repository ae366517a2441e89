"""Supervised deep-metric-learning baselines and probes for ISL.

Losses from the survey of deep metric learning (source document 002), the Magnet loss (Rippel et al. 2016,
document 000) and the Histogram loss (Ustinova & Lempitsky 2016, document 001), on pytorch-metric-learning's
contract ``loss(embeddings, labels, indices_tuple=None)`` so that its miners, distances and reducers compose;
the negative-mining rules of document 002 as miners; m-per-class and Magnet batch samplers; one registry
(``baselines.registry.LOSSES``) and the training loop behind ``tools/train_baseline.py``.
"""
