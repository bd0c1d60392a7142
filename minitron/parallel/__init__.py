"""Process groups, collectives, TP sharding and the CPU compatibility layer.

All communication in minitron happens in this package, with explicit groups."""
