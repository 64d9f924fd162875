"""Enrich: fetch the object a webhook names, derive what it means, record the events once.

`reconcile` finds what no webhook said: the reconciliation poll and the overdue scan.
"""
