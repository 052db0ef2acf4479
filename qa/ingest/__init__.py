"""Turning files into Documents: per-format readers and the clean-up of their text."""
