/// Layers and the four nets (VGG-11, MobileNetV2, PreAct ResNet-18, ResNet-50), each built from
/// an explicit width array. Arrives with the nets issue; today the module only re-exports the
/// engine so dependents build.
@_exported import Autodiff
