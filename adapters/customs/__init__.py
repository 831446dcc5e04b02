"""The customs agency adapter (mapping, replies, process)."""
