"""Reading images in and writing results out (atomically)."""

DEFAULT_MAX_PIXELS = 64_000_000  # images declaring more pixels are refused (decompression bombs)
