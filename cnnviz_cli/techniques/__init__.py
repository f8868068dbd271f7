"""Pure compute: (model, inputs, target, options) -> NumPy arrays and numbers. No files, no CLI."""

from cnnviz_cli.quiet_tf import import_tensorflow

import_tensorflow()
