"""The CAM and attribution methods, one rule each (see `techniques.cam.Method`).

Every module here is imported by `techniques.cam.methods()`: a new module needs no other edit.
"""
