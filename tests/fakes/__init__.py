"""Fakes that stand in for external systems at their network seam (real servers on loopback)."""
