"""Read models for officers, each tracked and rebuildable from the event log."""
