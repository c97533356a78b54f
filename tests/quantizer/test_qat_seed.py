"""The QAT guide's code, ported as MISSION.md allows: imports from neutronq, the
`model.apply(disable_observer)` slip fixed to `prepared_model.apply(disable_observer)`, and real
data that installs offline (Fashion-MNIST and a small CNN trained here) in place of ImageNet and
mobilenet_v2's downloaded weights. Everything else is the guide's: export with batch 1, train
with batch 5, SGD(lr=1e-2, momentum=0.9), observers disabled after a third of the epochs."""

from __future__ import annotations

import torch
from torch.utils.data import TensorDataset

from neutronq.data.fashion_mnist import accuracy, fashion_cnn, load_fashion_mnist, train_epoch

N_PRETRAIN, N_QAT, N_TEST = 10_000, 1_500, 2_000


def _pretrained_model():
    """Stands in for mobilenet_v2(weights=MobileNet_V2_Weights.DEFAULT)."""
    torch.manual_seed(0)
    x, y = load_fashion_mnist("train", N_PRETRAIN)
    model = fashion_cnn()
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(2):
        train_epoch(model, x, y, opt, generator=torch.Generator().manual_seed(0))
    return model


def test_qat_guide_code_on_fashion_mnist():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _run_guide()
    finally:
        torch.set_num_threads(threads)


def _run_guide():
    # ---- the guide's code, ported ----
    import torch
    from torch.utils.data import DataLoader
    from torchao.quantization.pt2e import (
        disable_observer,
        move_exported_model_to_eval,
        move_exported_model_to_train,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_qat_pt2e

    from neutronq import QuantizeFusedConvBnBiasAtenPass
    from neutronq.backend.neutron_target_spec import NeutronTargetSpec
    from neutronq.quantizer.neutron_quantizer import NeutronQuantizer

    model = _pretrained_model().eval()
    num_epochs = 3

    neutron_target_spec = NeutronTargetSpec(target="imxrt700")
    quantizer = NeutronQuantizer(neutron_target_spec, is_qat=True)  # (1)

    sample_inputs = (torch.randn(1, 1, 28, 28),)
    training_ep = torch.export.export(model, sample_inputs).module()  # (2)

    prepared_model = prepare_qat_pt2e(training_ep, quantizer)  # (3)
    prepared_model = move_exported_model_to_train(prepared_model)  # (4)

    criterion = torch.nn.CrossEntropyLoss()
    optimizer = torch.optim.SGD(prepared_model.parameters(), lr=1e-2, momentum=0.9)

    train_data = TensorDataset(*load_fashion_mnist("train", N_QAT))
    train_loader = DataLoader(train_data, batch_size=5)

    for epoch in range(num_epochs):
        for imgs, labels in train_loader:
            optimizer.zero_grad()
            outputs = prepared_model(imgs)
            loss = criterion(outputs, labels)
            loss.backward()
            optimizer.step()

        if epoch >= num_epochs / 3:
            prepared_model.apply(disable_observer)

    prepared_model = move_exported_model_to_eval(prepared_model)  # (6)
    quantized_model = convert_pt2e(prepared_model)  # (7)

    quantized_model = QuantizeFusedConvBnBiasAtenPass(
        default_zero_bias=True
    )(quantized_model).graph_module
    # ---- end of the guide's code ----

    x_test, y_test = load_fashion_mnist("test", N_TEST)
    float_acc = accuracy(model, x_test, y_test)
    qat_acc = accuracy(quantized_model, x_test, y_test)
    print(f"guide QAT on Fashion-MNIST ({N_TEST} test images): float {float_acc:.2f} %, QAT int8 {qat_acc:.2f} %")
    # Measured here (seed 0, one thread): float 71.15 %, QAT int8 67.80 %. The guide's settings
    # (batch 5 with BN statistics still updating, SGD lr 1e-2 with momentum 0.9) cost a few
    # points on this small model; the comparison at equal epochs with tuned settings is
    # test_qat_fashion_mnist.py.
    assert qat_acc >= 65.0, (float_acc, qat_acc)
    assert qat_acc >= float_acc - 5.0, (float_acc, qat_acc)
