"""Trade hub: an event-sourced single window for trade and port declarations."""
