"""Answering a query, one stage a module: plan, retrieve (and fuse),
personalize, present; with the nearest-neighbour lookups and the search log."""
