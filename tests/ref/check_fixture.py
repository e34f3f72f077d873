#!/usr/bin/python3
"""Self-check of the reference fixtures written by make_fixtures.py.

    /usr/bin/python3 tests/ref/check_fixture.py [NAME...]     (default: every fixture)

For each fixture it re-reads the four files with make_fixtures' own reader
(st_read) and checks:
  1. format: version "1", every part present and < 2 MB, the same metadata in
     all parts, exactly the expected tensor names, shapes and dtypes, the
     documented lr schedule;
  2. replay, float32, torch: rebuilds the model from the metadata alone, loads
     init.* and input, recomputes features, z, loss, running.*, grad.* and both
     3-step optimiser runs with torch.optim; bit-exact on the torch build that
     wrote the files, within float32 rounding on any other;
  3. definitions, float64, by hand: the same in double precision with NT-Xent,
     Adam, SGD and the schedule written out as in README.md (no
     F.cross_entropy, no torch.optim); the fixture must agree to
     |d| <= 1e-5 + 1e-4*|x|. The printed differences are the float32 noise
     floor a C implementation can expect to reach.
Exits nonzero on any failure.
"""
import json, math, os, sys
from collections import OrderedDict
from fractions import Fraction

import torch, torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True
import make_fixtures as M  # noqa: E402

failures = []


def fail(msg):
    failures.append(msg)
    print("  FAIL " + msg)


def compare(label, got, want, atol=M.ROBUST_ATOL, rtol=M.ROBUST_RTOL):
    """Elementwise |got-want| <= atol + rtol*|want| over every name in want."""
    worst, worst_name, exact = 0.0, None, True
    for k, w in want.items():
        g = got[k]
        if g.shape != w.shape:
            fail(f"{label}: {k} shape {tuple(g.shape)} != {tuple(w.shape)}")
            continue
        if not torch.equal(g.to(w.dtype), w):
            exact = False
        d = (g.double() - w.double()).abs()
        bad = d > atol + rtol * w.double().abs()
        if bad.any():
            fail(f"{label}: {k}: {bad.sum().item()} of {w.numel()} elements off, max abs diff {d.max().item():.3g}")
        if d.numel() and d.max().item() >= worst:
            worst, worst_name = d.max().item(), k
    print(f"  {label:<30} {'bit-exact' if exact else f'max abs diff {worst:.3g} ({worst_name})'}")


def model_from_meta(meta):
    model, _ = M.build(meta["arch"], int(meta["channels"]), float(Fraction(meta["width"])))
    return model


def check_format(name, tensors, meta, model):
    for part in M.PARTS:
        path = M.part_path(HERE, name, part)
        size = os.path.getsize(path)
        if size >= M.MAX_FILE_BYTES:
            fail(f"{path}: {size} bytes")
        with open(path, "rb") as f:
            n = int.from_bytes(f.read(8), "little")
        if n % 8:
            fail(f"{path}: header length {n} not a multiple of 8")
        t, m = M.st_read(path)
        if list(t) != sorted(t):
            fail(f"{path}: tensors not in name order")
        if {k: v for k, v in m.items() if k != "pe_fixture_part"} != {k: v for k, v in meta.items() if k != "pe_fixture_part"}:
            fail(f"{path}: metadata differs from the main part")
    if meta.get("pe_fixture_version") != "1":
        fail(f"pe_fixture_version {meta.get('pe_fixture_version')!r}")
    steps = int(meta["steps"])
    state, params = model.named_state(), model.named_params()
    running = [k for k in state if k.endswith("running_mean") or k.endswith("running_var")]
    want = {"input", "features", "z", "loss"}
    want |= {"init." + k for k in state} | {"grad." + k for k in params} | {"running." + k for k in running}
    for o in ("adam", "sgd"):
        want |= {f"{o}.lr"} | {f"{o}.loss.{k}" for k in range(1, steps + 1)} | {f"{o}.final.{k}" for k in state}
    if set(tensors) != want:
        fail(f"names: missing {sorted(want - set(tensors))[:5]}, unexpected {sorted(set(tensors) - want)[:5]}")
    for k, v in state.items():
        for pre in ("init.", "adam.final.", "sgd.final."):
            t = tensors.get(pre + k)
            if t is not None and (t.shape != v.shape or t.dtype != v.dtype):
                fail(f"{pre + k}: {t.dtype} {tuple(t.shape)}, model has {v.dtype} {tuple(v.shape)}")
    for k in params:
        t = tensors.get("grad." + k)
        if t is not None and (t.shape != params[k].shape or t.dtype != torch.float32):
            fail(f"grad.{k}: {t.dtype} {tuple(t.shape)}")
    b, c, s, d = int(meta["batch"]), int(meta["channels"]), int(meta["size"]), int(meta["feature_dim"])
    for k, shape in (("input", (2 * b, c, s, s)), ("features", (2 * b, d)), ("z", (2 * b, 128)), ("loss", (1,))):
        if k in tensors and tuple(tensors[k].shape) != shape:
            fail(f"{k}: shape {tuple(tensors[k].shape)}, want {shape}")
    for k in state:
        if k.endswith("num_batches_tracked"):
            for pre, n in (("init.", 0), ("adam.final.", steps), ("sgd.final.", steps)):
                if tensors[pre + k].item() != n:
                    fail(f"{pre + k} = {tensors[pre + k].item()}, want {n}")
    # the schedule as documented, recomputed from the metadata alone
    sch = json.loads(meta["sgd"])
    lrs = [sch["base_lr"] * (k + 1) / sch["warmup"] if k < sch["warmup"] else
           sch["base_lr"] * 0.5 * (1 + math.cos(math.pi * (k - sch["warmup"]) / (sch["total"] - sch["warmup"])))
           for k in range(steps)]
    if json.loads(meta["sgd_lrs"]) != lrs:
        fail(f"sgd_lrs {meta['sgd_lrs']} != schedule {lrs}")
    if not torch.equal(tensors["sgd.lr"], torch.tensor(lrs, dtype=torch.float32)):
        fail("sgd.lr tensor != schedule")
    if len(set(lrs)) < 2:
        fail("sgd lr does not change across the steps")
    if not torch.equal(tensors["adam.lr"], torch.full((steps,), json.loads(meta["adam"])["lr"], dtype=torch.float32)):
        fail("adam.lr tensor != adam lr")
    print(f"  format: {len(tensors)} tensors in {len(M.PARTS)} files; names, shapes, dtypes, metadata, schedule ok")


def check_settings(meta, model):
    """The metadata must describe what make_fixtures.py runs (the replays use its settings)."""
    want = {"temperature": repr(M.TEMPERATURE), "bn_momentum": repr(M.BN_MOMENTUM), "bn_eps": repr(M.BN_EPS),
            "steps": str(M.STEPS), "sgd_lrs": json.dumps(M.SGD_LRS)}
    for k, v in want.items():
        if meta[k] != v:
            fail(f"metadata {k}={meta[k]!r}, make_fixtures.py uses {v!r}")
    a = json.loads(meta["adam"])
    if (a["lr"], tuple(a["betas"]), a["eps"], a["weight_decay"]) != (M.ADAM["lr"], M.ADAM["betas"], M.ADAM["eps"], M.ADAM["weight_decay"]):
        fail("metadata adam settings differ from make_fixtures.py")
    s = json.loads(meta["sgd"])
    if (s["base_lr"], s["momentum"], s["weight_decay"]) != (M.SGD["lr"], M.SGD["momentum"], M.SGD["weight_decay"]):
        fail("metadata sgd settings differ from make_fixtures.py")
    for mod in model.modules():
        if isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)) and (mod.momentum, mod.eps) != (M.BN_MOMENTUM, M.BN_EPS):
            fail("model BN momentum/eps differ")


def check(name):
    print(f"{name}:")
    tensors, meta = M.read_fixture(HERE, name)
    model = model_from_meta(meta)
    check_format(name, tensors, meta, model)
    check_settings(meta, model)
    x = tensors["input"]
    init = OrderedDict((k[5:], v) for k, v in tensors.items() if k.startswith("init."))
    stored = {k: v for k, v in tensors.items() if k != "input" and not k.startswith("init.")}

    got = M.run(model, x, init)
    compare("replay (f32, torch)", got, stored)

    m64 = model_from_meta(meta).double()
    init64 = OrderedDict((k, v.double() if v.is_floating_point() else v) for k, v in init.items())
    got64 = M.run(m64, x.double(), init64, by_hand=True)
    compare("definitions (f64, by hand)", got64, stored)
    for o in ("adam", "sgd"):
        worst = 0.0
        for k in model.named_params():
            d64 = got64[f"{o}.final.{k}"] - init64[k]
            d32 = tensors[f"{o}.final.{k}"].double() - init64[k]
            worst = max(worst, ((d32 - d64).norm() / d64.norm()).item())
        print(f"    {o}: worst relative L2 error of a parameter's update (final - init): {worst:.2g}")
    print(f"    loss            f64 {got64['loss'].item():.9f}  fixture {tensors['loss'].item():.9f}")
    for o in ("adam", "sgd"):
        ks = range(1, int(meta["steps"]) + 1)
        print(f"    {o:<4} losses   f64 " + " ".join(f"{got64[f'{o}.loss.{k}'].item():.7f}" for k in ks) +
              "  fixture " + " ".join(f"{tensors[f'{o}.loss.{k}'].item():.7f}" for k in ks))


def main():
    M.setup()
    n = M.check_resnet_names()
    print(f"resnet18 width 1 == torchvision resnet18 (CIFAR stem): {n} state_dict entries, same names/shapes/forward")
    names = sys.argv[1:] or list(M.FIXTURES)
    for n in names:
        check(n)
    if failures:
        print(f"{len(failures)} failure(s)")
        sys.exit(1)
    print("all fixtures ok")


if __name__ == "__main__":
    main()
