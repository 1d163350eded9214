"""Registry credential sources, fetched: AWS ECR tokens, docker credential helpers.

An adapter like ``store`` and ``runtime``: it turns a ``domain.registries.Source``
into credentials, asking AWS (boto3, imported only here) or running
``docker-credential-NAME get``, and keeps answers as long as the domain's
rules allow. It imports the domain and nothing above it.
"""
