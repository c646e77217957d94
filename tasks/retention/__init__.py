"""Retention: the rules table, due dates, deletion per item, verification (no personal data)."""
