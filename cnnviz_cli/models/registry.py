"""The keras.applications models cnnviz can build by name."""

from dataclasses import dataclass


@dataclass(frozen=True)
class Application:
    """How to build one keras.applications model and prepare its input."""

    constructor: str  # attribute of keras.applications
    module: str  # keras.applications submodule that holds its preprocess_input
    input_size: int  # the default size; the only one unless `any_size`
    any_size: bool = False  # the model (with its classifier) takes images of any size


APPLICATIONS: dict[str, Application] = {
    "vgg16": Application("VGG16", "vgg16", 224),
    "vgg19": Application("VGG19", "vgg19", 224),
    "resnet50": Application("ResNet50", "resnet", 224),
    "resnet101": Application("ResNet101", "resnet", 224),
    "resnet152": Application("ResNet152", "resnet", 224),
    "resnet50v2": Application("ResNet50V2", "resnet_v2", 224),
    "resnet101v2": Application("ResNet101V2", "resnet_v2", 224),
    "mobilenet": Application("MobileNet", "mobilenet", 224),
    "mobilenet_v2": Application("MobileNetV2", "mobilenet_v2", 224),
    "mobilenet_v3_small": Application("MobileNetV3Small", "mobilenet_v3", 224, any_size=True),
    "mobilenet_v3_large": Application("MobileNetV3Large", "mobilenet_v3", 224, any_size=True),
    "efficientnetb0": Application("EfficientNetB0", "efficientnet", 224),
    "efficientnetb1": Application("EfficientNetB1", "efficientnet", 240),
    "efficientnetv2b0": Application("EfficientNetV2B0", "efficientnet_v2", 224),
    "efficientnetv2s": Application("EfficientNetV2S", "efficientnet_v2", 384),
    "inceptionv3": Application("InceptionV3", "inception_v3", 299),
    "inception_resnet_v2": Application("InceptionResNetV2", "inception_resnet_v2", 299),
    "xception": Application("Xception", "xception", 299),
    "densenet121": Application("DenseNet121", "densenet", 224),
    "densenet169": Application("DenseNet169", "densenet", 224),
    "nasnetmobile": Application("NASNetMobile", "nasnet", 224),
    "convnext_tiny": Application("ConvNeXtTiny", "convnext", 224),
    "convnext_small": Application("ConvNeXtSmall", "convnext", 224),
}


def _folded(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


_ALIASES: dict[str, str] = {
    _folded(spelling): name
    for name, entry in APPLICATIONS.items()
    for spelling in (name, entry.constructor)
}


def canonical_name(name: str) -> str | None:
    """The registry name of `name`, read case-insensitively without `_`/`-` (`MobileNetV2`,
    `mobilenetv2` and `mobilenet-v2` are `mobilenet_v2`); None if it names no model."""
    return _ALIASES.get(_folded(name))


def model_names() -> list[str]:
    """Every name `--model` accepts besides a file path, `demo` first."""
    return ["demo", *APPLICATIONS]
