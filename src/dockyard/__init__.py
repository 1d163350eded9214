"""Dockyard: a self-hosted container platform.

Packages, top to bottom (``.importlinter`` enforces the order):
``entry`` (the ``dockyard`` command) over ``cli`` and ``server``; ``server``
wires ``api`` and ``worker``; both call ``services``; services use the
adapters (``store``, ``crypto``); everything may use the pure ``domain``.
"""

__version__ = "0.1.0"
