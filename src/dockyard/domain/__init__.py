"""The pure core: apps, configuration, operations, users and their rules.

No I/O and no third-party imports. Every other package may import it; it
imports nothing of Dockyard's but itself. Errors are types here, each with a
message a user can act on; the edges map them to HTTP statuses and exit codes.
"""
