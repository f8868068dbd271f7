"""Model resolution: names and files to `ResolvedModel`, layer lookup, feature extractors."""

from cnnviz_cli.quiet_tf import import_tensorflow

import_tensorflow()
