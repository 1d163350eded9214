"""The HTTP API (FastAPI): the contract the CLI and every other client use.

The only package that imports ``fastapi``. Routes convert between schemas and
a ``services`` call, nothing more; errors are mapped to statuses once, in
``errors.py``.
"""
