"""The HTTP router (Caddy, driven through its admin API) and the health probe.

Implements ``domain.containers.Router``. Imports ``httpx``; may import ``domain``.
"""
