"""The package's version, in one place: read by setuptools (pyproject.toml), provenance records and --version."""
__version__ = "0.1.0"
