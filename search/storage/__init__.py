"""Optuna storage: URL → storage, study creation and loading, and riding out database faults.

Modules: `faults` (retried calls, heartbeat, study lock), `connect` (URLs, version pinning, stale trials).
"""

from search._lazy import lazy_exports

__all__ = ["DEFAULT_STORAGE", "StorageError", "load_stored_study", "make_storage"]

__getattr__, __dir__ = lazy_exports(
    __name__,
    {
        "DEFAULT_STORAGE": "connect",
        "StorageError": "connect",
        "load_stored_study": "connect",
        "make_storage": "connect",
    },
)
