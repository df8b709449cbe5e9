"""Serving benchmarks: this server against in-process ORT, a naive app and peer servers."""
