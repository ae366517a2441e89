"""N-pair loss (Sohn 2016; document 002, "N-pair Loss").

    -log exp(f^T f+) / (exp(f^T f+) + sum_{i=1}^{N-1} exp(f^T f_i-))

One (anchor, positive) pair per class present in the batch; the negatives of an anchor are the positives
of the other N - 1 pairs. pytorch-metric-learning's NPairsLoss builds exactly these pairs (the first positive
pair of each label) and takes the cross-entropy of the N x N anchor-positive dot-product matrix with the
diagonal as target; verified against a loop in tests/test_baseline_losses_pair.py.
Notation -> code: f^T f -> ``distance``: the raw dot product, as the document writes it (pml's default
DotProductSimilarity normalises the embeddings first, i.e. cosine; on the project's encoders, whose outputs
are unit vectors, the two coincide). The paper's L2 regulariser on embeddings is pml's
``embedding_regularizer`` (e.g. LpRegularizer), off by default.
"""
from __future__ import annotations

from pytorch_metric_learning import losses
from pytorch_metric_learning.distances import DotProductSimilarity

from .base import CheckedInputMixin


class NPairLoss(CheckedInputMixin, losses.NPairsLoss):
    """pml's NPairsLoss with input checks, on the un-normalised dot product by default."""

    def get_default_distance(self):
        return DotProductSimilarity(normalize_embeddings=False)
