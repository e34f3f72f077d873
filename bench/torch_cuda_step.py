"""torch_cuda_step.py - the reference for bench/train-gpu.sh: PyTorch's
SimCLR training step on a GPU, the step bench/train_step.c times (forward
of 2B views in one batch, NT-Xent at T 0.5, backward, SGD with momentum
0.9, lr 0.06, wd 5e-4), on the same synthetic input.

    python3 bench/torch_cuda_step.py ARCH SIZE CHANNELS BATCH STEPS PRECISION FORMAT

ARCH: resnet18 (torchvision's, CIFAR stem: 3x3 conv, no max-pool, as pe's
resnet18). PRECISION: fp32 (TF32 off in cuDNN and cuBLAS), tf32, or bf16
(autocast, fp32 master weights). FORMAT: nchw or nhwc (channels_last).
cudnn.benchmark is on. Prints images/s and ms/step over STEPS steps after
three warm-up steps, and torch.cuda.max_memory_allocated.
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def model(arch, channels):
    assert arch == "resnet18", arch
    m = torchvision.models.resnet18(num_classes=10)
    m.conv1 = nn.Conv2d(channels, 64, 3, 1, 1, bias=False)
    m.maxpool = nn.Identity()
    m.fc = nn.Sequential(nn.Linear(512, 512, bias=False), nn.BatchNorm1d(512),
                         nn.ReLU(inplace=True), nn.Linear(512, 128))
    return m


def ntxent(z, t):
    z = F.normalize(z, dim=1)
    n = z.shape[0]
    s = z @ z.t() / t
    s.fill_diagonal_(float("-inf"))
    pos = (torch.arange(n, device=z.device) + n // 2) % n
    return F.cross_entropy(s, pos)


def main():
    arch, size, ch, batch, steps, prec, fmt = sys.argv[1:8]
    size, ch, batch, steps = int(size), int(ch), int(batch), int(steps)
    torch.backends.cudnn.benchmark = True
    tf32 = prec == "tf32"
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.backends.cudnn.allow_tf32 = tf32
    dev = torch.device("cuda")
    m = model(arch, ch).to(dev)
    x = torch.rand(2 * batch, ch, size, size, device=dev)
    if fmt == "nhwc":
        m = m.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(m.parameters(), lr=0.06, momentum=0.9, weight_decay=5e-4)

    def step():
        opt.zero_grad(set_to_none=True)
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=prec == "bf16"):
            z = m(x)
        loss = ntxent(z.float(), 0.5)
        loss.backward()
        opt.step()
        return loss

    for _ in range(3):
        step()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(steps):
        loss = step()
    loss.item()
    torch.cuda.synchronize()
    dt = time.perf_counter() - t0
    print("torch %s %dx%dx%d batch=%d %s %s: %.1f images/s, %.1f ms/step" %
          (arch, size, size, ch, batch, prec, fmt, steps * batch / dt, dt / steps * 1000))
    print("torch max_memory_allocated %.0f MiB" % (torch.cuda.max_memory_allocated() / 2**20))


if __name__ == "__main__":
    main()
