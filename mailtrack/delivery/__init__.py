"""Getting an event from a request to its destinations: the recorder, its spool, and webhooks."""
