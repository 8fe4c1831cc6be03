"""Offline IAM evaluation of the templates with AWS's own data (see engine.py)."""
