"""Reading images in and writing results out (atomically)."""
