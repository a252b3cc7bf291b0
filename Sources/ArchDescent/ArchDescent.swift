/// The power-law fit, the target solver and the architecture-descent loop. Arrives with the
/// search issue; today the module only re-exports pruning so dependents build.
@_exported import Pruning
