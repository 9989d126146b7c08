"""The build is described in pyproject.toml; this file only hands it to setuptools."""
from setuptools import setup

setup()
