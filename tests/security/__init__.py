"""Security tests: scanners, the severity gate, hardening and secret handling."""
