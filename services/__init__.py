"""labbot domain services (never imports Slack)."""

__version__ = "0.1.0"
