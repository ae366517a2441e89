"""Instance Similarity Learning (Wang et al., ICCV 2021, arXiv 2108.02721) and its shared tooling."""
