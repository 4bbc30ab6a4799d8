"""Tests for the on-disk spool."""
