/// CIFAR-10/100, tinyImageNet and Fashion-MNIST loaders and augmentation. Arrives with the
/// datasets issue; today the module only re-exports the engine so dependents build.
@_exported import Autodiff
