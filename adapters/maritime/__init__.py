"""The maritime agency adapter (mapping, replies, process)."""
