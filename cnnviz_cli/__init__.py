"""cnnviz: see what a Keras CNN has learned and why it decides what it decides.

Importing the package is cheap: TensorFlow is only imported by the modules that compute.
"""

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

__version__ = "0.1.0"
