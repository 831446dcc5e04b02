"""Simulated agencies that talk to the hub over the broker, as real ones would."""
