"""Lets scrapyd-deploy build an egg (``setup.py bdist_egg``); metadata is in pyproject.toml."""

from setuptools import setup

setup()
