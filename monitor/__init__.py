"""monitor: a streaming drift and performance monitor for deployed ML models."""

__version__ = "0.1.0"
