"""The shared evaluation used by every method: weighted kNN (Wu et al. 2018), k-means with NMI / ACC / ARI,
feature extraction placed by dataset index, and the result dict written as JSON."""
from isl.eval.clustering import ari, cluster_accuracy, cluster_metrics, kmeans, nmi
from isl.eval.features import extract_features
from isl.eval.knn import weighted_knn_accuracy, weighted_knn_predict
from isl.eval.report import evaluate_embeddings, write_json

__all__ = ["ari", "cluster_accuracy", "cluster_metrics", "evaluate_embeddings", "extract_features", "kmeans",
           "nmi", "weighted_knn_accuracy", "weighted_knn_predict", "write_json"]
