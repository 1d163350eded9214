"""The operations worker: threads that claim queued operations and run them.

Sits beside ``api`` at the top of the server; calls ``services`` only.
"""
