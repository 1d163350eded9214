"""The HTTP router (HAProxy, changed through its runtime API) and the health probe.

Implements ``domain.containers.Router``. Imports ``httpx``; may import ``domain``.
"""
