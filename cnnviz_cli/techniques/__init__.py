"""Pure compute: (model, inputs, target, options) -> NumPy arrays and numbers. No files, no CLI."""
