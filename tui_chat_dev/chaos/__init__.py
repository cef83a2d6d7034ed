"""The chaos harness (devices sending through a fault proxy) and the checker of what was stored."""
