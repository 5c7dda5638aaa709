"""rinha: a payment intermediary daemon and its operator toolkit (Rinha de Backend 2025)."""

__version__ = "0.1.0"
