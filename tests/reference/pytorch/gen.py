"""A small CNN made and exported to ONNX by PyTorch (NCHW), with PyTorch's own predictions, for
tests/tests/interop_cli.rs: `fmc import` must turn it into a channels-last `.fm` model whose
predictions equal PyTorch's within 1e-5 relative.

Run with a venv holding torch and onnx (made with PyTorch 2.15.0, onnx from PyPI):
    python gen.py
Writes torch_cnn.onnx, x.npy (the inputs, already channels-last: NCHW data transposed with
`x.transpose(0, 2, 3, 1)`, as the imported file's header says) and y.npy (PyTorch's softmax output).
"""
import numpy as np
import torch
import torch.nn as nn

torch.manual_seed(0)


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 8, 3)
        self.c2 = nn.Conv2d(8, 16, 3)
        self.fc = nn.Linear(16 * 4 * 4, 10)

    def forward(self, x):
        x = torch.relu(self.c1(x))
        x = nn.functional.max_pool2d(x, 2)
        x = torch.relu(self.c2(x))
        x = torch.flatten(x, 1)
        return torch.softmax(self.fc(x), 1)


model = Net().eval()
x = torch.rand(4, 1, 14, 14)
torch.onnx.export(model, x, "torch_cnn.onnx", input_names=["x"], output_names=["y"],
                  opset_version=17, dynamo=False)
np.save("x.npy", x.numpy().transpose(0, 2, 3, 1))
np.save("y.npy", model(x).detach().numpy())
