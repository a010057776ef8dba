"""Serving: the HTTP service, batch precomputation and the state they share."""
