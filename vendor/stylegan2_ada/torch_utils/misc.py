"""Small utilities the networks and the training loop share: shape assertions, a cache of
constant tensors, parameter copying between networks (resume, G_ema), DDP helpers, an
infinite sampler and a module summary printer."""
import contextlib
import re
import warnings

import numpy as np
import torch

# ----------------------------------------------------------------------------
# Constant tensors, cached per (value, shape, dtype, device) so repeated forward passes do not
# re-upload the same small tensor to the device.

_constant_cache = dict()


def constant(value, shape=None, dtype=None, device=None, memory_format=None):
    value = np.asarray(value)
    if shape is not None:
        shape = tuple(shape)
    if dtype is None:
        dtype = torch.get_default_dtype()
    if device is None:
        device = torch.device('cpu')
    if memory_format is None:
        memory_format = torch.contiguous_format
    key = (value.shape, value.dtype, value.tobytes(), shape, dtype, device, memory_format)
    tensor = _constant_cache.get(key, None)
    if tensor is None:
        tensor = torch.as_tensor(value.copy(), dtype=dtype, device=device)
        if shape is not None:
            tensor = torch.broadcast_to(tensor, shape)
        tensor = tensor.contiguous(memory_format=memory_format)
        _constant_cache[key] = tensor
    return tensor


def nan_to_num(input, nan=0.0, posinf=None, neginf=None, *, out=None):
    return torch.nan_to_num(input, nan=nan, posinf=posinf, neginf=neginf, out=out)


# ----------------------------------------------------------------------------
# Shape checks.

@contextlib.contextmanager
def suppress_tracer_warnings():
    """Silence TracerWarnings where a Python value derived from a tensor shape is intended."""
    with warnings.catch_warnings():
        warnings.simplefilter('ignore', category=torch.jit.TracerWarning)
        yield


def assert_shape(tensor, ref_shape):
    """Check tensor.shape against ref_shape; None in ref_shape matches any size."""
    if tensor.ndim != len(ref_shape):
        raise AssertionError(f'assert_shape: number of dimensions is {tensor.ndim}, not {len(ref_shape)}')
    for idx, (size, ref_size) in enumerate(zip(tensor.shape, ref_shape)):
        if ref_size is None:
            continue
        if isinstance(ref_size, torch.Tensor):
            with suppress_tracer_warnings():
                torch._assert(torch.equal(torch.as_tensor(size), ref_size), f'assert_shape: dimension {idx} differs')
        elif isinstance(size, torch.Tensor):
            with suppress_tracer_warnings():
                torch._assert(torch.equal(size, torch.as_tensor(ref_size)),
                              f'assert_shape: dimension {idx} should be {ref_size}')
        elif size != ref_size:
            raise AssertionError(f'assert_shape: dimension {idx} is {size}, not {ref_size}')


def profiled_function(fn):
    """Decorator: label the function in torch.autograd.profiler traces."""
    def decorator(*args, **kwargs):
        with torch.autograd.profiler.record_function(fn.__name__):
            return fn(*args, **kwargs)
    decorator.__name__ = fn.__name__
    decorator.__doc__ = fn.__doc__
    return decorator


# ----------------------------------------------------------------------------
# An endless index stream for DataLoader: a seeded permutation is walked cyclically while items
# swap places within a window, so passes differ; rank r keeps every num_replicas-th index from r.

class InfiniteSampler(torch.utils.data.Sampler):
    def __init__(self, dataset, rank=0, num_replicas=1, shuffle=True, seed=0, window_size=0.5, start=0):
        if len(dataset) <= 0:
            raise ValueError('InfiniteSampler: dataset is empty')
        if num_replicas <= 0:
            raise ValueError(f'InfiniteSampler: num_replicas must be > 0, got {num_replicas}')
        if not 0 <= rank < num_replicas:
            raise ValueError(f'InfiniteSampler: rank must be in [0, {num_replicas}), got {rank}')
        if not 0 <= window_size <= 1:
            raise ValueError(f'InfiniteSampler: window_size must be in [0, 1], got {window_size}')
        super().__init__()
        self.dataset = dataset
        self.rank = rank
        self.num_replicas = num_replicas
        self.shuffle = shuffle
        self.seed = seed
        self.window_size = window_size
        self.start = int(start)  # position in the (all-rank) index stream to continue from: exact resume

    def __iter__(self):
        order = np.arange(len(self.dataset))
        rnd = None
        window = 0
        if self.shuffle:
            rnd = np.random.RandomState(self.seed)
            rnd.shuffle(order)
            window = int(np.rint(order.size * self.window_size))
        idx = 0
        while True:
            i = idx % order.size
            if idx % self.num_replicas == self.rank and idx >= self.start:
                yield order[i]
            if window >= 2:
                j = (i - rnd.randint(window)) % order.size
                order[i], order[j] = order[j], order[i]
            idx += 1


# ----------------------------------------------------------------------------
# Parameters and buffers.

def params_and_buffers(module):
    assert isinstance(module, torch.nn.Module)
    return list(module.parameters()) + list(module.buffers())


def named_params_and_buffers(module):
    assert isinstance(module, torch.nn.Module)
    return list(module.named_parameters()) + list(module.named_buffers())


@torch.no_grad()
def copy_params_and_buffers(src_module, dst_module, require_all=False):
    """Copy tensors by name (used on resume and to initialise G_ema). Missing names are an error
    only with require_all; a shape mismatch is always an error naming the tensor."""
    assert isinstance(src_module, torch.nn.Module)
    assert isinstance(dst_module, torch.nn.Module)
    src_tensors = dict(named_params_and_buffers(src_module))
    for name, tensor in named_params_and_buffers(dst_module):
        if name not in src_tensors:
            if require_all:
                raise KeyError(f'copy_params_and_buffers: source has no tensor named {name!r}')
            continue
        src = src_tensors[name]
        if src.shape != tensor.shape:
            raise ValueError(f'copy_params_and_buffers: shape mismatch for {name!r}: '
                             f'source {tuple(src.shape)}, destination {tuple(tensor.shape)}')
        tensor.copy_(src.detach()).requires_grad_(tensor.requires_grad)


@contextlib.contextmanager
def ddp_sync(module, sync):
    """Skip DDP gradient all-reduce (no_sync) for all but the last accumulation round."""
    assert isinstance(module, torch.nn.Module)
    if sync or not isinstance(module, torch.nn.parallel.DistributedDataParallel):
        yield
    else:
        with module.no_sync():
            yield


def check_ddp_consistency(module, ignore_regex=None):
    """Assert every parameter/buffer is identical across DDP ranks (debugging aid)."""
    assert isinstance(module, torch.nn.Module)
    for name, tensor in named_params_and_buffers(module):
        fullname = type(module).__name__ + '.' + name
        if ignore_regex is not None and re.fullmatch(ignore_regex, fullname):
            continue
        tensor = tensor.detach()
        if tensor.is_floating_point():
            tensor = nan_to_num(tensor)
        other = tensor.clone()
        torch.distributed.broadcast(tensor=other, src=0)
        assert (tensor == other).all(), fullname


# ----------------------------------------------------------------------------
# Table of submodules with parameter/buffer counts and output shapes from one forward pass.

def print_module_summary(module, inputs, max_nesting=3, skip_redundant=True):
    assert isinstance(module, torch.nn.Module)
    assert not isinstance(module, torch.jit.ScriptModule)
    assert isinstance(inputs, (tuple, list))

    entries = []
    nesting = [0]

    def pre_hook(_mod, _inputs):
        nesting[0] += 1

    def post_hook(mod, _inputs, outputs):
        nesting[0] -= 1
        if nesting[0] <= max_nesting:
            outputs = list(outputs) if isinstance(outputs, (tuple, list)) else [outputs]
            outputs = [t for t in outputs if isinstance(t, torch.Tensor)]
            entries.append((mod, outputs))

    hooks = [mod.register_forward_pre_hook(pre_hook) for mod in module.modules()]
    hooks += [mod.register_forward_hook(post_hook) for mod in module.modules()]
    try:
        outputs = module(*inputs)
    finally:
        for hook in hooks:
            hook.remove()

    # Count each tensor once: in the innermost module that owns it.
    tensors_seen = set()
    rows = []
    for mod, outs in entries:
        unique_params = [t for t in mod.parameters() if id(t) not in tensors_seen]
        unique_buffers = [t for t in mod.buffers() if id(t) not in tensors_seen]
        tensors_seen |= {id(t) for t in unique_params + unique_buffers}
        if skip_redundant and not (unique_params or unique_buffers or outs) and mod is not module:
            continue
        name = '<top-level>' if mod is module else next(n for n, m in module.named_modules() if m is mod)
        rows.append((name, sum(t.numel() for t in unique_params), sum(t.numel() for t in unique_buffers),
                     [str(list(t.shape)) for t in outs], [str(t.dtype).split('.')[-1] for t in outs]))

    header = ('Module', 'Parameters', 'Buffers', 'Output shape', 'Datatype')
    table = [header, ['---'] * 5]
    for name, np_, nb, shapes, dtypes in rows:
        table.append([name, str(np_) if np_ else '-', str(nb) if nb else '-',
                      (shapes + ['-'])[0], (dtypes + ['-'])[0]])
        for idx in range(1, len(shapes)):
            table.append([name + f':{idx}', '-', '-', shapes[idx], dtypes[idx]])
    table.append(['---'] * 5)
    table.append(['Total', str(sum(r[1] for r in rows)), str(sum(r[2] for r in rows)), '-', '-'])
    widths = [max(len(str(cell)) for cell in column) for column in zip(*table)]
    print()
    for row in table:
        print('  '.join(str(cell) + ' ' * (width - len(str(cell))) for cell, width in zip(row, widths)))
    print()
    return outputs
