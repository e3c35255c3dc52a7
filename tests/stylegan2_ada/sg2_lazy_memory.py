"""Resident memory of reading a dataset zip through training.dataset (lazy) vs vendor.common eagerly.

    python sg2_lazy_memory.py ZIP {lazy|eager} WORKERS   -> prints JSON {rss_growth_mb, decoded_mb, items}

Reads every item once through a DataLoader (WORKERS worker processes) and reports how much this
process's resident set grew (VmRSS, Linux) against the size the decoded uint8 array would have.
"""
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..', 'vendor', 'stylegan2_ada'))
import numpy as np  # noqa: E402
import torch  # noqa: E402

from training.dataset import ImageFolderDataset  # noqa: E402
from vendor.common.datasets import load_dataset  # noqa: E402


def rss_mb():
    with open('/proc/self/status') as f:
        return next(int(line.split()[1]) for line in f if line.startswith('VmRSS:')) / 1024


path, mode, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
torch.set_num_threads(1)
before = rss_mb()
if mode == 'lazy':
    dataset = ImageFolderDataset(path)
else:
    dataset = load_dataset(path)
loader = torch.utils.data.DataLoader(dataset, batch_size=64, num_workers=workers)
count, checksum, peak = 0, 0, 0.0
for images, _ in loader:
    count += len(images)
    checksum += int(images[:, :, 0, 0].long().sum())
    peak = max(peak, rss_mb())
decoded = len(dataset) * int(np.prod(dataset[0][0].shape)) / 2 ** 20
print(json.dumps(dict(rss_growth_mb=max(peak, rss_mb()) - before, decoded_mb=decoded, items=count, checksum=checksum)))
