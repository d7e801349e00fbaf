"""The HTTP API: queue sandbox actions, read sessions and runs back."""
