"""Eventarc trigger and push-subscription definitions, and the local router."""
