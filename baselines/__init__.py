"""Models behind one small interface, registered by name."""
