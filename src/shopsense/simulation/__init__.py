"""Simulated shoppers of the synthetic store: the true behaviour model the
benchmarks use in process (``shoppers``), and the HTTP driver behind
``shopsense simulate`` (``driver``)."""
