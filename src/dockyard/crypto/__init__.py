"""Encryption at rest and token hashing, with ``cryptography``.

The only package that imports ``cryptography``. Implements ``domain.ports.Cipher``.
"""
