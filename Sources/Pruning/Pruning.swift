/// Gates, Taylor-FO importance, the pruner, trajectories and surgery. Arrives with the search
/// issue; today the module only re-exports the nets so dependents build.
@_exported import Nets
