"""The port agency adapter (mapping, replies, process)."""
