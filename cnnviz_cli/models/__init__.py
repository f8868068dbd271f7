"""Model resolution: names and files to `ResolvedModel`, layer lookup, feature extractors."""
