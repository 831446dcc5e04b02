"""Agency messages on a real broker: the hub's log dispatched to agencies, their answers brought back."""
