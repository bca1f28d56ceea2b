"""HTTP: sans-IO endpoints (request in, response out), their pages, and the WSGI adapter.

``endpoints`` knows nothing of sockets; ``wsgi`` adapts it to PEP 3333. A
settings/events API and an ASGI adapter go next to them.
"""
