"""The inspection agency adapter (mapping, replies, process)."""
