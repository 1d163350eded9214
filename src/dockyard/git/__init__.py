"""Git: bare repositories served by git's own ``git http-backend``, and the push hook.

Commands are argument lists, never shells. ``hook.py`` runs inside ``git
receive-pack``; it only records the push and queues a deploy through the API,
then streams the operation's log back as ``remote:`` lines.
"""
