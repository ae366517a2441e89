"""Read a CSV the tools wrote, closing the file (a bare ``csv.DictReader(open(...))`` leaks it: ResourceWarning)."""
import csv


def read_rows(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))
