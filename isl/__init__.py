"""Instance Similarity Learning (Wang et al., ICCV 2021, arXiv 2108.02721) and its shared tooling."""

# The one version string: pyproject.toml reads it (dynamic version), every run's results.json and every
# checkpoint record it (isl.rundir.RunDir.write_results, isl.checkpoint.save_checkpoint).
__version__ = "0.2.0"
