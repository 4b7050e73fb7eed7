"""The trigger mesh: events, routing, transports."""
