"""Runtimes: the parts ``domain.containers`` declares, on the Docker engine.

``engine.py`` holds the connection the parts share; ``images.py`` and
``building.py`` are the engine's images and builder, used by every backend;
``docker.py`` (one engine) and ``swarm.py`` (a swarm manager) each add a
scheduler and put the three together. The only package that imports the
``docker`` SDK. May import ``domain``.
"""
