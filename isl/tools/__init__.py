"""The command-line tools, importable so that `pip install .` can install them as console commands.

Each module has `build_parser()`, `main(argv) -> results` (called by tests and by other tools) and `cli()`
(the console command: user errors print one line and exit 2). `tools/<name>.py` in a checkout and the
console commands of pyproject.toml (isl-train, isl-baseline, ...) both call the same `cli()`.
"""
