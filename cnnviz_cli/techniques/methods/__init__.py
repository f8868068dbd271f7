"""The CAM and attribution methods, one rule each (see `techniques.cam.Method`).

Importing this package (as importing any module in it does first) imports every module here,
the ones of `techniques.cam.METHOD_MODULES` first and then any other, so the registry's order
(that of --help) does not depend on which module a caller imported first. A new module needs
no other edit.
"""

import importlib
import pkgutil

from cnnviz_cli.techniques.cam import METHOD_MODULES

for _module in dict.fromkeys([*METHOD_MODULES, *sorted(
        f"{__name__}.{info.name}" for info in pkgutil.iter_modules(__path__))]):
    importlib.import_module(_module)
