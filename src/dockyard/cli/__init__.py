"""The ``dockyard`` command line, in Aptible's grammar.

The only package that imports ``click``. It talks to the API over HTTP
(``httpx``) and never to the database or the Docker engine. Commands take an
``Environment`` (streams, config directory, variables) so tests run them
in-process and read their output and exit status.
"""
