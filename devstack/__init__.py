"""The local stack: Google's emulators plus the three units, started as `make dev` does."""
