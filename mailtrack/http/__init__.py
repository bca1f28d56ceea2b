"""HTTP: sans-IO endpoints (request in, response out), their router and pages, and the WSGI adapter.

``messages`` holds the request and response values; ``router`` finds the
endpoint and token in a path; ``pages`` writes every body served (pixel, HTML
pages); ``endpoints`` decides which answer a request gets and records the
event; ``wsgi`` adapts that to PEP 3333. None of them knows sockets. A
settings/events API and an ASGI adapter go next to them.
"""
