/// CIFAR-10/100, tinyImageNet and Fashion-MNIST loaders, the train/validation split,
/// normalization, augmentation and the batch loader. Re-exports the engine, whose `Tensor` and
/// `RandomGenerator` appear in this module's API.
@_exported import Autodiff
