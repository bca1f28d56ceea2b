"""Keep the module paths of mailtrack 0.1 importable: ``mailtrack.webhook``, ``mailtrack.wsgi``, ...

Before the packages (``core``, ``storage``, ``delivery``, ``http``, ``cli``)
every module sat at the top of ``mailtrack``; the README named
``mailtrack.webhook.verify_signature``, ``mailtrack.web.Endpoints`` and
``mailtrack.wsgi:application``. A meta path finder maps each old name to the
module that holds the code now, as the *same* module object (so
``mailtrack.webhook.sign is mailtrack.delivery.webhooks.sign``), without a
file per alias and without loading anything before it is asked for.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence
from types import ModuleType

#: Old module name -> where it lives now.
ALIASES = {
    "mailtrack.exc": "mailtrack.exceptions",
    "mailtrack.settings": "mailtrack.core.settings",
    "mailtrack.smtpapi": "mailtrack.core.smtpapi",
    "mailtrack.tokens": "mailtrack.core.tokens",
    "mailtrack.urls": "mailtrack.core.urls",
    "mailtrack.results": "mailtrack.core.results",
    "mailtrack.scanner": "mailtrack.core.scanner",
    "mailtrack.charrefs": "mailtrack.core.charrefs",
    "mailtrack.tracker": "mailtrack.core.tracker",
    "mailtrack.message": "mailtrack.core.message",
    "mailtrack.rules": "mailtrack.core.rewrite.rules",
    "mailtrack.subscription": "mailtrack.core.rewrite.footer",
    "mailtrack.text": "mailtrack.core.urlfinder",
    "mailtrack.rewrite": "mailtrack.core.rewrite",
    "mailtrack.mime": "mailtrack.core.mime",
    "mailtrack.store": "mailtrack.storage.sqlite",
    "mailtrack.recorder": "mailtrack.delivery.recorder",
    "mailtrack.webhook": "mailtrack.delivery.webhooks",
    "mailtrack.web": "mailtrack.http.endpoints",
    "mailtrack.demo": "mailtrack.cli.demo",
}


class _AliasLoader(importlib.abc.Loader):
    def __init__(self, target: str) -> None:
        self.target = target
        self.spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.target)
        self.spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system set __spec__ to the alias' spec; the module keeps its own.
        module.__spec__ = self.spec


class _AliasFinder(importlib.abc.MetaPathFinder):
    def find_spec(
        self, fullname: str, path: Sequence[str] | None = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        real = ALIASES.get(fullname)
        if real is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(real))


def install() -> None:
    """Put the alias finder on ``sys.meta_path`` once."""
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.append(_AliasFinder())
