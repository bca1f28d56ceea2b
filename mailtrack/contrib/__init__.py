"""Framework integrations (Django, Flask), each behind its extra and each a thin layer over the core and ``http``."""
