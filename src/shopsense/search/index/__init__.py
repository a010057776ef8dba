"""Building and changing a search index folder: its settings, the build from a
catalogue, and the updates made without a rebuild."""
