"""Running statistics reported from anywhere in the training code and collected once per tick.

report(name, value) accumulates count, sum and sum of squares per name (cheap, no device sync).
Collector.update() gathers those moments, summed over DDP ranks when init_multiprocessing() was
called, and exposes num/mean/std for the interval since the previous update."""
import re

import numpy as np
import torch

import dnnlib

_num_moments = 3             # enough for mean and std: n, sum x, sum x^2
_reduce_dtype = torch.float32  # each report() is summed in this precision first
_counter_dtype = torch.float64  # accumulated moments (float64 keeps long ticks accurate)
_rank = 0
_sync_device = None          # where all_reduce happens; None while running single-process
_sync_called = False
_counters = dict()           # name -> device -> moment tensor
_cumulative = dict()         # name -> moments summed over all ranks and all finished intervals


def init_multiprocessing(rank, sync_device):
    """Enable cross-rank reduction; call once per process before the first report()."""
    global _rank, _sync_device
    if _sync_called:
        raise RuntimeError('init_multiprocessing() must be called before the first collection')
    _rank = rank
    _sync_device = sync_device


def report(name, value):
    """Record a scalar or a tensor of values (all elements count) under `name`; returns value."""
    if name not in _counters:
        _counters[name] = dict()
    elems = torch.as_tensor(value)
    if elems.numel() == 0:
        return value
    elems = elems.detach().flatten().to(_reduce_dtype)
    moments = torch.stack([
        torch.ones_like(elems).sum(),
        elems.sum(),
        elems.square().sum(),
    ])
    assert moments.ndim == 1 and moments.shape[0] == _num_moments
    moments = moments.to(_counter_dtype)
    device = moments.device
    if device not in _counters[name]:
        _counters[name][device] = torch.zeros_like(moments)
    _counters[name][device].add_(moments)
    return value


def report0(name, value):
    """Like report(), but only rank 0 records (for values every rank computes identically)."""
    report(name, value if _rank == 0 else [])
    return value


class Collector:
    """Collects the statistics whose names match `regex`. With keep_previous, a name that got no
    new reports in the last interval keeps its previous values instead of vanishing."""

    def __init__(self, regex='.*', keep_previous=True):
        self._regex = re.compile(regex)
        self._keep_previous = keep_previous
        self._cumulative = dict()
        self._moments = dict()
        self.update()
        self._moments.clear()

    def names(self):
        return [name for name in _counters if self._regex.fullmatch(name)]

    def update(self):
        if not self._keep_previous:
            self._moments.clear()
        for name, cumulative in _sync(self.names()):
            if name not in self._cumulative:
                self._cumulative[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
            delta = cumulative - self._cumulative[name]
            self._cumulative[name].copy_(cumulative)
            if float(delta[0]) != 0:
                self._moments[name] = delta

    def _get_delta(self, name):
        assert self._regex.fullmatch(name)
        if name not in self._moments:
            self._moments[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
        return self._moments[name]

    def num(self, name):
        return int(self._get_delta(name)[0])

    def mean(self, name):
        delta = self._get_delta(name)
        if int(delta[0]) == 0:
            return float('nan')
        return float(delta[1] / delta[0])

    def std(self, name):
        delta = self._get_delta(name)
        if int(delta[0]) == 0 or not np.isfinite(float(delta[1])):
            return float('nan')
        if int(delta[0]) == 1:
            return float(0)
        mean = float(delta[1] / delta[0])
        raw_var = float(delta[2] / delta[0])
        return np.sqrt(max(raw_var - np.square(mean), 0))  # population std, as upstream

    def as_dict(self):
        stats = dnnlib.EasyDict()
        for name in self.names():
            stats[name] = dnnlib.EasyDict(num=self.num(name), mean=self.mean(name), std=self.std(name))
        return stats

    def __getitem__(self, name):
        return self.mean(name)

    def state_dict(self):
        """What an exact resume needs: moments reported but not yet collected (`pending`) and the
        last interval's moments (`moments`, shown again under keep_previous). Collective under DDP."""
        pending = {name: (cumulative - self._cumulative.get(name, 0)).clone() for name, cumulative in _sync(self.names())}
        return dict(pending={k: v for k, v in pending.items() if float(v[0]) != 0},
                    moments={k: v.clone() for k, v in self._moments.items()})

    def load_state_dict(self, state):
        """Inverse of state_dict() in a fresh process: the next update() sees the pending moments."""
        for name in list(state.get('moments', {})) + list(state.get('pending', {})):
            if name not in _counters:  # names() lists only names that have counters
                _counters[name] = {torch.device('cpu'): torch.zeros([_num_moments], dtype=_counter_dtype)}
        for name, moments in state.get('moments', {}).items():
            self._moments[name] = moments.to(_counter_dtype).clone()
        for name, pending in state.get('pending', {}).items():
            base = _cumulative.get(name, torch.zeros([_num_moments], dtype=_counter_dtype))
            self._cumulative[name] = base - pending.to(_counter_dtype)


def _sync(names):
    """Fold the per-device counters of `names` into the global cumulative moments (summing across
    ranks when distributed) and return [(name, cumulative moments)]."""
    global _sync_called
    if len(names) == 0:
        return []
    _sync_called = True

    deltas = []
    device = _sync_device if _sync_device is not None else torch.device('cpu')
    for name in names:
        delta = torch.zeros([_num_moments], dtype=_counter_dtype, device=device)
        for counter in _counters[name].values():
            delta.add_(counter.to(device))
            counter.copy_(torch.zeros_like(counter))
        deltas.append(delta)
    deltas = torch.stack(deltas)

    if _sync_device is not None and torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(deltas)

    deltas = deltas.cpu()
    for idx, name in enumerate(names):
        if name not in _cumulative:
            _cumulative[name] = torch.zeros([_num_moments], dtype=_counter_dtype)
        _cumulative[name].add_(deltas[idx])
    return [(name, _cumulative[name]) for name in names]
