"""Batch clickstream analytics platform: shared logic for lambdas, notebooks, dashboards and the CLI."""

__version__ = "0.1.0"
