"""Domain exceptions: what went wrong, in words a data team can act on.

The flow turns these into a Failed state with the message as is; anything else is a bug.
"""

from __future__ import annotations


class ClusterTriggersError(Exception):
    """Base of every error this project raises on purpose."""


class DataError(ClusterTriggersError):
    """The documents cannot be used: NaN or inf, a dimension change, an empty collection, a malformed page."""


class ClusteringRefused(ClusterTriggersError):
    """The requested clustering cannot work on this data; refused before any time is spent."""


class NotFound(ClusterTriggersError):
    """A collection, cluster definition or result that does not exist."""


class SourceUnavailable(ClusterTriggersError):
    """A remote collection did not answer usefully after every retry."""


class Conflict(ClusterTriggersError):
    """A change the contract forbids in the trigger's current state (HTTP 409)."""


class AlreadyExists(Conflict):
    """A trigger with this id exists already."""


class QuotaExceeded(Conflict):
    """A namespace is at its maximum of active triggers."""
