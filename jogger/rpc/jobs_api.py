"""What the Jobs API (proto/jogger/v1/jobs.proto) accepts, for both of its ends: jog checks
before it sends, the service when it serves. Light to import: jog loads it at every start."""

MAX_GRACE = 7 * 24 * 3600
"""The longest grace period a Stop may ask for, in seconds (a week); 0 to MAX_GRACE
inclusive."""
