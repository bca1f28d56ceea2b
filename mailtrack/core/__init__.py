"""The pure core: settings, tokens, scanning and rewriting of HTML, text and whole MIME messages.

Nothing here does I/O or imports an adapter: only the standard library,
itsdangerous, idna (UTS #46 host names, as browsers map them) and
cryptography (AES-SIV for opaque tokens: never hand-written; imported on a
tracker's first opaque token). An import-linter contract in the test suite
keeps it that way.
"""
