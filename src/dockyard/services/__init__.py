"""Use cases: what a user can ask of Dockyard, whatever the edge they came by.

Called by ``api`` and ``worker``; uses the adapters (``store``, ``crypto``)
and the ``domain``. Checks access and turns "not yours" into "not found".
"""
