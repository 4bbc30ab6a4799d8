"""Unit tests for outrider.delivery."""
