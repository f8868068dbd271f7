"""Pure compute: (model, inputs, target, options) -> NumPy arrays and numbers. No files, no CLI.

Modules that declare specs (techniques.cam and techniques/methods/) import TensorFlow lazily
(cnnviz_cli.lazy), so that the command line can read them without it.
"""
