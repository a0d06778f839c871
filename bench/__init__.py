"""Benchmarks: the real `oi-bot` process against the local fake vendors, with vendor latency."""
