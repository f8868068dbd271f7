"""Arrays to pictures: normalising, colour maps, overlays, labelled grids. No recomputation."""
