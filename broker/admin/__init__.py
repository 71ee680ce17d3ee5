"""Operator-facing endpoints: health, OpenAPI and the interactive docs page."""
