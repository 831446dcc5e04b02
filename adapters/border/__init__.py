"""The border agency adapter (mapping, replies, process)."""
