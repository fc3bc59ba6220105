"""Small shared utilities (config I/O, atomic file writes)."""
