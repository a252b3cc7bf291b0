/// Self-describing HDF5 checkpoints, written atomically. (In progress.)
@_exported import Nets
