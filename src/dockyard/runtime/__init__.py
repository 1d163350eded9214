"""Runtimes: the Docker engine (``docker.py``) behind ``domain.containers.Runtime``.

The only package that imports the ``docker`` SDK. May import ``domain``.
"""
