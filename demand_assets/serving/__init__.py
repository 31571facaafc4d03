"""Serving: the HTTP forecast service (`make serve`)."""
