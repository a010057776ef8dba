"""Benchmarks: speed and memory figures, printed with the machine they ran on."""
