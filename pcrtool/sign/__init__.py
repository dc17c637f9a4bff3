"""Signing: the Signer interface (api.py), message builders, and key backends (adapters)."""
