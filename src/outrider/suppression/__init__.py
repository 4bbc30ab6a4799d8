"""Suppression lists: addresses never attempted, per sender domain and global."""
