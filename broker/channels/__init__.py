"""Channels: each maps a transport to neutral requests and back."""
