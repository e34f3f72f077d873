#!/usr/bin/python3
"""pe <-> PyTorch interoperability of encoder checkpoints, both ways.

    /usr/bin/python3 tests/ref/interop.py pe2torch TEST_INTEROP CHECKPOINT WORKDIR
    /usr/bin/python3 tests/ref/interop.py torch2pe TEST_INTEROP ARCH WIDTH CHANNELS SIZE WORKDIR

pe2torch: CHECKPOINT was written by pe-train. Its architecture, width, input
channels and size come from its __metadata__. The script builds the PyTorch
model with the names pe promises (torchvision's resnet18 with the CIFAR stem
at width 1; at any other width the ResNet18Cifar class of make_fixtures.py,
which has torchvision's module names; or the `small` nn.Sequential) and the
projection head. It drops the "optimizer." tensors (after checking that
they name the parameters, with their shapes), loads the encoder and the
head ("head." prefix) with strict=True, and compares the eval-mode features
and z on fixed random inputs with what pe computes from the same file
(TEST_INTEROP, the build's tests/test_interop).

torch2pe: the other way. The script builds the model in PyTorch with random
weights and randomised batch-norm running statistics and counters, saves
its state_dict (encoder + "head.", num_batches_tracked as I64 of shape [])
as safetensors, has pe load it through TEST_INTEROP, and compares the same
way.

Each comparison also perturbs the PyTorch side (the encoder's last
convolution's weights times 1.001) and requires that the perturbed features
fail the tolerance, so the check can fail.

Needs Debian's python3-torch (1.13) and python3-torchvision (0.14), nothing
else; safetensors is read and written by make_fixtures.py's few lines.
Exit status: 0 all checks hold, 1 a check failed, 2 usage.
"""
import os, subprocess, sys

import torch, torch.nn as nn

sys.dont_write_bytecode = True  # no __pycache__ in the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_fixtures as mf  # noqa: E402  (the models and the safetensors reader/writer)

# Features and z must agree to 1e-4 of the tensor's largest magnitude:
# max |pe - torch| <= 1e-4 * max |torch|. Both sides compute in float32 but
# sum in different orders (pe: im2col and its own GEMM tiles; torch: its
# own convolution), which costs a few ulps per layer; eval-mode batch norm
# rescales by gamma / sqrt(running_var) and the errors ride through up to
# 20 layers. The gap measured here is 2e-7 to 8e-7 of the scale, so 1e-4
# leaves over 100x margin. Real bugs land far above it (measured on these
# models): one 3x3 kernel transposed 5e-3 and up, one BN's mean and
# variance swapped 6e-2, batch statistics instead of running ones about 1,
# BN eps 1e-3 instead of 1e-5 7e-4; and the perturbation check below shows
# that a 1e-3 change of one layer's weights fails. Relative to the tensor's
# largest value rather than elementwise, because features after ReLU and
# average pooling have entries near 0 whose absolute error is what counts.
RTOL = 1e-4
N_INPUTS = 8
INPUT_SEED = 20240601


def fail(msg):
    print(f"interop: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def check(cond, msg):
    if not cond:
        fail(msg)


def encoder_of(arch, width, channels):
    """(encoder, feature dim): torchvision's own resnet18 at width 1, so that
    its names are checked against torchvision itself, not our copy."""
    if arch == "resnet18" and width == 1.0:
        return mf.torchvision_resnet18_cifar(channels)
    if arch == "resnet18":
        enc = mf.ResNet18Cifar(channels, width)
        return enc, enc.feature_dim
    if arch == "small":
        return mf.small(channels)
    fail(f"unknown architecture {arch!r}")


def build(arch, width, channels):
    enc, d = encoder_of(arch, width, channels)
    return mf.SimCLR(enc, d), d


def compare(name, pe, ref):
    """max |pe - ref| / max |ref|; fails above RTOL."""
    check(pe.shape == ref.shape, f"{name}: shape {tuple(pe.shape)} vs {tuple(ref.shape)}")
    check(bool(torch.isfinite(ref).all()), f"{name}: PyTorch gave non-finite values")
    scale = ref.abs().max().item()
    check(scale > 0, f"{name}: all zero, nothing compared")
    rel = (pe - ref).abs().max().item() / scale
    return rel


def run_pe(test_interop, arch, width_str, channels, size, ckpt, x, workdir, tag):
    """Features and z of x by pe (test_interop), as tensors."""
    xin = os.path.join(workdir, f"{tag}.in.f32")
    out = os.path.join(workdir, f"{tag}.out.f32")
    x.contiguous().numpy().astype("<f4").tofile(xin)
    cmd = [test_interop, arch, width_str, str(channels), str(size), ckpt, xin, str(x.shape[0]), out]
    r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    if r.returncode != 0:
        fail(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    import numpy as np
    return torch.from_numpy(np.fromfile(out, dtype="<f4").astype("float32"))


def compare_outputs(tag, model, d, x, flat):
    n = x.shape[0]
    check(flat.numel() == n * (d + 128), f"{tag}: pe wrote {flat.numel()} values, want {n * (d + 128)}")
    feat_pe, z_pe = flat[:n * d].reshape(n, d), flat[n * d:].reshape(n, 128)
    model.eval()
    with torch.no_grad():
        feat, z = model(x)
    rf, rz = compare(f"{tag} features", feat_pe, feat), compare(f"{tag} z", z_pe, z)
    print(f"{tag}: features (n={n}, d={d}) max|diff|/max|x| = {rf:.2e}, z {rz:.2e} (tolerance {RTOL:g})")
    check(rf <= RTOL, f"{tag}: features differ from PyTorch's by {rf:.2e} of their scale")
    check(rz <= RTOL, f"{tag}: z differs from PyTorch's by {rz:.2e} of its scale")
    # the comparison can fail: a 1e-3 change of one layer must show. The
    # last convolution, because its effect on the features is the least
    # damped (4e-4 to 7e-4 of their scale here; the first layer's can fade
    # to 2e-5 through the eval-mode batch norms of `small`)
    last = [m for m in model.encoder.modules() if isinstance(m, nn.Conv2d)][-1]
    with torch.no_grad():
        saved = last.weight.clone()
        last.weight.mul_(1.001)
        feat_p, _ = model(x)
        last.weight.copy_(saved)
    rp = compare(f"{tag} perturbed", feat_pe, feat_p)
    check(rp > RTOL, f"{tag}: a 1e-3 perturbation gave {rp:.2e}, within tolerance: the check is too loose")


def inputs(channels, size, n=N_INPUTS):
    g = torch.Generator().manual_seed(INPUT_SEED)
    # normalised images: roughly zero mean, unit spread
    return torch.randn(n, channels, size, size, generator=g)


def split_state(tensors):
    enc, head, opt = {}, {}, {}
    for k, v in tensors.items():
        if k.startswith("optimizer."):
            opt[k] = v
        elif k.startswith("head."):
            head[k[len("head."):]] = v
        else:
            enc[k] = v
    return enc, head, opt


def same_layout(what, got, want):
    """got: {name: tensor} from the file; want: a module's state_dict."""
    missing, extra = sorted(set(want) - set(got)), sorted(set(got) - set(want))
    check(not missing and not extra, f"{what}: missing {missing[:5]}, unexpected {extra[:5]}")
    for k, v in want.items():
        check(tuple(got[k].shape) == tuple(v.shape), f"{what}: {k} shape {tuple(got[k].shape)} vs {tuple(v.shape)}")
        check(got[k].dtype == v.dtype, f"{what}: {k} dtype {got[k].dtype} vs {v.dtype}")


def pe2torch(test_interop, ckpt, workdir):
    tensors, meta = mf.st_read(ckpt)
    check(meta.get("format") == "pe-train-1", f"{ckpt}: format {meta.get('format')!r}, not pe-train-1")
    for k in ("arch", "width", "channels", "size", "feature_dim", "head", "optimizer", "mean", "std",
              "epochs_done", "step", "seed", "set_fingerprint"):
        check(k in meta, f"{ckpt}: metadata lacks {k!r}")
    arch, width, channels, size = meta["arch"], float(meta["width"]), int(meta["channels"]), int(meta["size"])
    check(len(meta["mean"].split(",")) == 3 and len(meta["std"].split(",")) == 3, "mean/std metadata")
    check(meta["head"] == "512-128", f"head {meta['head']!r}")
    model, d = build(arch, width, channels)
    check(int(meta["feature_dim"]) == d, f"feature_dim {meta['feature_dim']} vs {d}")
    enc, head, opt = split_state(tensors)
    same_layout("encoder", enc, model.encoder.state_dict())
    same_layout("head", head, model.head.state_dict())
    if arch == "resnet18" and width == 1.0:
        # torchvision's own resnet18, conv1/maxpool/fc replaced: same names in the same order
        tv = model.encoder
        check(type(tv).__module__.startswith("torchvision."), "width 1 must use torchvision's class")
        check(len(enc) == 120, f"{len(enc)} encoder tensors, torchvision's resnet18 has 120")
    elif arch == "resnet18":
        mf.check_resnet_names()  # the class used here is torchvision's at width 1
    # optimiser state: one tensor per parameter and state, shaped like it
    params = model.named_params()
    states = {"adam": ("exp_avg", "exp_avg_sq"), "sgd": ("momentum_buffer",)}.get(meta["optimizer"])
    check(states is not None, f"optimizer {meta['optimizer']!r}")
    want = {f"optimizer.{s}.{k}": tuple(p.shape) for s in states for k, p in params.items()}
    got = {k: tuple(v.shape) for k, v in opt.items()}
    check(set(got) == set(want), f"optimizer tensors: missing {sorted(set(want) - set(got))[:3]}, "
          f"unexpected {sorted(set(got) - set(want))[:3]}")
    check(got == want, "optimizer tensor shapes differ from their parameters'")
    # strict loads into the PyTorch modules
    model.encoder.load_state_dict(enc, strict=True)
    model.head.load_state_dict(head, strict=True)
    nbt = [v.item() for k, v in enc.items() if k.endswith("num_batches_tracked")]
    check(all(c == int(meta["step"]) for c in nbt), f"num_batches_tracked {set(nbt)} vs step {meta['step']}")
    n = 4 if (arch == "resnet18" and width >= 1) else N_INPUTS  # keep width 1 quick on the CPU
    x = inputs(channels, size, n)
    flat = run_pe(test_interop, arch, meta["width"], channels, size, ckpt, x, workdir, "pe2torch")
    compare_outputs(f"pe->torch {arch} w{meta['width']} {channels}x{size}x{size}", model, d, x, flat)


def randomise(model, channels, size, seed):
    """Random weights (PyTorch's init) and batch norm away from its defaults:
    running statistics first gathered from three train-mode forwards (so
    activations stay in a sane range), then scaled and shifted at random;
    gamma, beta and num_batches_tracked random too."""
    g = torch.Generator().manual_seed(seed)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, channels, size, size, generator=g))
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
                c = m.num_features
                m.weight.copy_(0.5 + torch.rand(c, generator=g))
                m.bias.copy_(0.4 * torch.rand(c, generator=g) - 0.2)
                m.running_var.mul_(0.5 + torch.rand(c, generator=g))
                m.running_mean.add_(0.2 * m.running_var.sqrt() * torch.randn(c, generator=g))
                m.num_batches_tracked.fill_(int(torch.randint(1, 1 << 40, (1,), generator=g)))
    model.eval()


def torch2pe(test_interop, arch, width_str, channels, size, workdir):
    width = float(width_str)
    torch.manual_seed(1234)
    model, d = build(arch, width, channels)
    randomise(model, channels, size, 4321)
    state = model.named_state()
    for k, v in state.items():
        if k.endswith("num_batches_tracked"):
            check(v.dtype == torch.int64 and v.dim() == 0, f"{k}: {v.dtype} shape {tuple(v.shape)}")
    path = os.path.join(workdir, f"torch_{arch}.safetensors")
    mf.st_write(path, {k: v.detach() for k, v in state.items()},
                {"format": "pt", "written_by": "tests/ref/interop.py"})
    x = inputs(channels, size)
    flat = run_pe(test_interop, arch, width_str, channels, size, path, x, workdir, "torch2pe")
    compare_outputs(f"torch->pe {arch} w{width_str} {channels}x{size}x{size}", model, d, x, flat)


def main(argv):
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    if len(argv) == 5 and argv[1] == "pe2torch":
        pe2torch(argv[2], argv[3], argv[4])
    elif len(argv) == 8 and argv[1] == "torch2pe":
        torch2pe(argv[2], argv[3], argv[4], int(argv[5]), int(argv[6]), argv[7])
    else:
        print(__doc__.split("\n\n")[1], file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
