"""Interfaces the domain needs from the outside world; adapters implement them."""

from __future__ import annotations

from typing import Protocol


class Cipher(Protocol):
    """Authenticated symmetric encryption of text at rest."""

    def encrypt(self, plaintext: str) -> str: ...

    def decrypt(self, ciphertext: str) -> str: ...
