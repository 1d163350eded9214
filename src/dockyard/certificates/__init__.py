"""TLS certificates: ordered from an ACME CA, checked when a user brings one, or issued
by the server's own local CA for the platform's default names.

An adapter, beside the router: it may import the domain only. It is the one
package that imports ``acme`` and ``josepy`` (certbot's ACME library), and
it touches no store: keys and certificates go in and out as PEM text, and
the caller keeps them (encrypted) where it wants.
"""
