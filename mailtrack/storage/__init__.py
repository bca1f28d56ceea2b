"""Where events are kept: the :class:`~mailtrack.storage.base.EventStore` protocol and its implementations.

``base`` is the protocol and :class:`~mailtrack.storage.base.StoreUnavailable`;
``sqlite`` the single-machine store. A PostgreSQL store goes next to it.
Adapters (recorder, webhooks, CLI) use only the protocol and catch only
``StoreUnavailable``.
"""
