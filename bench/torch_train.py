"""SimCLR on Fashion-MNIST in PyTorch: the configuration pe-train runs, for comparison.

Run with Debian's PyTorch (apt-get install python3-torch python3-torchvision):
    /usr/bin/python3 bench/torch_train.py [--epochs E] [--train-limit N] [--test-limit N]
        [--bank-limit N] [--seed S] [--workers 0|1] [--threads T] [--data DIR]

What it trains (pe-train --arch small --size 28 --batch 256, defaults otherwise):
  encoder  the `small` nn.Sequential of pe-train(1) / tests/ref/make_fixtures.py, 1 channel, 128-d
  head     Linear(128,512,no bias)-BatchNorm1d(512)-ReLU-Linear(512,128)
  loss     NT-Xent, temperature 0.5 (as ../shared/bench/torch_simclr_step.py)
  optim    Adam, lr 1e-3, weight decay 1e-6 (L2), batch 256, drop_last, shuffled every epoch
  views    torchvision on PIL "L" images: RandomResizedCrop(28, scale=(0.08, 1)),
           RandomHorizontalFlip(), RandomApply([ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
           RandomGrayscale(0.2), ToTensor(), Normalize(mean, std), where mean and std are the
           population mean and std of pixel/255 over the training images used (as pe-train
           computes them when --mean/--std are not given).
Data: Fashion-MNIST read directly from DIR/*-idx3-ubyte.gz and *-idx1-ubyte.gz (gzip + numpy);
the training set is the first --train-limit images of the training file, the test set the
first --test-limit images of the test file (file order, so the same images as
examples/train-fashion-mnist.sh uses with TRAIN_LIMIT and TEST_LIMIT).

kNN monitor, as pe-train's: encoder features (the average pool, not the head) in eval mode of
every training image (the memory bank; with --bank-limit N the first N of them, as
pe-train --knn-bank with the set train-N) and every test image, whole images (28x28, no crop, flip
or jitter), ToTensor + Normalize; cosine similarity; the k = 200 most similar bank images vote
for their labels with weight exp(sim / 0.5); the class with the largest total wins.

Output: JSON lines on standard output.
  {"baseline":"raw_pixels",...}   kNN on the normalised 784-pixel vectors (same k, T)
  {"baseline":"random_init",...}  kNN on the features of the untrained model (torch's default
                                  initialisation drawn from --seed; eval mode, so its batch norms
                                  use the initial running statistics 0 and 1)
  {"epoch":E,...}                 per epoch: mean step loss (each step's loss before its update),
                                  images/s and seconds over the training steps only (the kNN
                                  monitor not included), wait_seconds (of which spent waiting for
                                  the DataLoader), knn_acc, knn_seconds, wall_s since the start.
Random numbers are torch's (the crops differ from pe-train's whatever the seed).
"""
import argparse, gzip, json, os, random, sys, time

import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
from PIL import Image
from torchvision import transforms as Tr


def small(ch):
    def block(i, o, s):
        return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
                             nn.Conv2d(o, o, 3, 1, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))
    return nn.Sequential(nn.Conv2d(ch, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True),
                         block(16, 32, 1), block(32, 64, 2), block(64, 128, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten())


def projection_head(d):
    return nn.Sequential(nn.Linear(d, 512, bias=False), nn.BatchNorm1d(512), nn.ReLU(inplace=True),
                         nn.Linear(512, 128))


def read_idx(path, header, limit):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    a = np.frombuffer(raw, np.uint8, offset=header)
    if header == 16:
        a = a.reshape(-1, 28, 28)
    return a[:limit] if limit else a


def read_pe_checkpoint(path):
    """Tensors and metadata of a safetensors file (pe-train's checkpoint), without the
    safetensors package."""
    import struct
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    dt = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "F16": np.float16}
    out = {}
    for name, e in header.items():
        a, b = e["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[a:b], dt[e["dtype"]]).reshape(e["shape"]).copy())
    return out, meta


def nt_xent(z, t):
    n = z.shape[0] // 2
    z = F.normalize(z, dim=1)
    sim = z @ z.t() / t
    sim.fill_diagonal_(-1e9)
    target = torch.cat([torch.arange(n, 2 * n), torch.arange(0, n)])
    return F.cross_entropy(sim, target)


class TwoViews(torch.utils.data.Dataset):
    def __init__(self, images, transform):
        self.images, self.transform = images, transform

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        im = Image.fromarray(self.images[i], mode="L")
        return self.transform(im), self.transform(im)


def knn_accuracy(bank, bank_labels, test, test_labels, k=200, t=0.5, nclasses=10):
    """Weighted kNN as pe-train's monitor (lib/train.c, pe_knn_accuracy)."""
    bank = F.normalize(bank, dim=1)
    test = F.normalize(test, dim=1)
    k = min(k, bank.shape[0])
    correct = 0
    for s in range(0, test.shape[0], 500):
        sim = test[s:s + 500] @ bank.t()
        w, idx = sim.topk(k, dim=1)
        votes = torch.zeros(sim.shape[0], nclasses, dtype=torch.float64)
        votes.scatter_add_(1, bank_labels[idx], torch.exp(w.double() / t))
        correct += (votes.argmax(1) == test_labels[s:s + 500]).sum().item()
    return correct / test.shape[0]


@torch.no_grad()
def features(encoder, x, batch=512):
    was = encoder.training
    encoder.eval()
    out = torch.cat([encoder(x[s:s + batch]) for s in range(0, x.shape[0], batch)])
    encoder.train(was)
    return out


def emit(obj):
    print(json.dumps(obj), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--train-limit", type=int, default=0, help="first N training images (0: all 60000)")
    ap.add_argument("--test-limit", type=int, default=0, help="first N test images (0: all 10000)")
    ap.add_argument("--bank-limit", type=int, default=0,
                    help="kNN memory bank: the first N training images (0: all the training images)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--workers", type=int, default=0, help="DataLoader num_workers (0 or 1 on 2 cores)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--data", default=os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist"))
    ap.add_argument("--no-baselines", action="store_true", help="skip the raw-pixel and random-init lines")
    ap.add_argument("--eval-checkpoint", metavar="FILE",
                    help="no training: load the encoder of a pe-train checkpoint (its mean/std too) and "
                         "print this script's kNN accuracy of it on the same train/test images")
    a = ap.parse_args()

    t_start = time.perf_counter()
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    random.seed(a.seed)
    np.random.seed(a.seed)

    d = a.data
    xtr = read_idx(f"{d}/train-images-idx3-ubyte.gz", 16, a.train_limit)
    ytr = torch.from_numpy(read_idx(f"{d}/train-labels-idx1-ubyte.gz", 8, a.train_limit).astype(np.int64))
    xte = read_idx(f"{d}/t10k-images-idx3-ubyte.gz", 16, a.test_limit)
    yte = torch.from_numpy(read_idx(f"{d}/t10k-labels-idx1-ubyte.gz", 8, a.test_limit).astype(np.int64))
    px = xtr.astype(np.float64) / 255.0
    mean, std = float(px.mean()), float(px.std())  # population, over the training images used

    # eval inputs: whole 28x28 images, ToTensor + Normalize (float32 as torchvision computes it)
    def norm(x):
        return ((torch.from_numpy(x.astype(np.float32)) / 255.0 - mean) / std).unsqueeze(1)
    nb = a.bank_limit if 0 < a.bank_limit < len(xtr) else len(xtr)
    etr, ete = norm(xtr[:nb]), norm(xte)
    ybank = ytr[:nb]

    encoder = small(1)
    if a.eval_checkpoint:
        sd, meta = read_pe_checkpoint(a.eval_checkpoint)
        encoder.load_state_dict({k: v for k, v in sd.items() if not k.startswith(("optimizer.", "head."))},
                                strict=True)
        mean, std = float(meta["mean"].split(",")[0]), float(meta["std"].split(",")[0])
        etr, ete = norm(xtr[:nb]), norm(xte)
        acc = knn_accuracy(features(encoder, etr), ybank, features(encoder, ete), yte)
        emit({"checkpoint": a.eval_checkpoint, "epochs_done": int(meta.get("epochs_done", -1)),
              "mean": mean, "std": std, "bank": nb, "test": len(xte), "knn_acc": round(acc, 4)})
        return
    head = projection_head(128)
    model = nn.Sequential(encoder, head)
    info = dict(torch=torch.__version__, threads=torch.get_num_threads(), workers=a.workers,
                train=len(xtr), bank=nb, test=len(xte), batch=a.batch, seed=a.seed,
                mean=round(mean, 6), std=round(std, 6))
    emit({"config": info})

    if not a.no_baselines:
        t0 = time.perf_counter()
        acc = knn_accuracy(etr.flatten(1), ybank, ete.flatten(1), yte)
        emit({"baseline": "raw_pixels", "knn_acc": round(acc, 4), "knn_seconds": round(time.perf_counter() - t0, 1)})
        t0 = time.perf_counter()
        acc = knn_accuracy(features(encoder, etr), ybank, features(encoder, ete), yte)
        emit({"baseline": "random_init", "seed": a.seed, "knn_acc": round(acc, 4),
              "knn_seconds": round(time.perf_counter() - t0, 1)})

    transform = Tr.Compose([
        Tr.RandomResizedCrop(28, scale=(0.08, 1.0)),
        Tr.RandomHorizontalFlip(),
        Tr.RandomApply([Tr.ColorJitter(0.4, 0.4, 0.4, 0.1)], p=0.8),
        Tr.RandomGrayscale(p=0.2),
        Tr.ToTensor(),
        Tr.Normalize((mean,), (std,)),
    ])
    g = torch.Generator()
    g.manual_seed(a.seed)
    loader = torch.utils.data.DataLoader(TwoViews(xtr, transform), batch_size=a.batch, shuffle=True,
                                         drop_last=True, num_workers=a.workers, generator=g,
                                         persistent_workers=a.workers > 0)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, weight_decay=1e-6)
    model.train()
    for ep in range(1, a.epochs + 1):
        t0 = time.perf_counter()
        wait, loss_sum, steps = 0.0, 0.0, 0
        it = iter(loader)
        while True:
            tw = time.perf_counter()
            try:
                v1, v2 = next(it)
            except StopIteration:
                break
            wait += time.perf_counter() - tw
            loss = nt_xent(model(torch.cat([v1, v2])), 0.5)
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item()
            steps += 1
        dt = time.perf_counter() - t0
        tk = time.perf_counter()
        acc = knn_accuracy(features(encoder, etr), ybank, features(encoder, ete), yte)
        tk = time.perf_counter() - tk
        emit({"epoch": ep, "steps": ep * steps, "loss": round(loss_sum / steps, 6),
              "images_per_s": round(steps * a.batch / dt, 1), "seconds": round(dt, 3),
              "wait_seconds": round(wait, 3), "knn_acc": round(acc, 4), "knn_seconds": round(tk, 1),
              "wall_s": round(time.perf_counter() - t_start, 1)})


if __name__ == "__main__":
    main()
