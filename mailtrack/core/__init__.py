"""The pure core: settings, tokens, scanning and rewriting of HTML, text and whole MIME messages.

Nothing here does I/O or imports an adapter: only the standard library,
itsdangerous and idna (UTS #46 host names, as browsers map them). An
import-linter contract in the test suite keeps it that way.
"""
