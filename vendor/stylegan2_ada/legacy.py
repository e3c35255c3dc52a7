"""Load a StyleGAN2-ADA network from any file a user brings, without running anything from it.

    load_network('network-snapshot-000100.pkl')   # NVlabs pickle (snapshot or published network)
    load_network('https://.../ffhq.pkl')           # downloaded once into the dnnlib cache
    load_network('runs/00000-.../network-snapshot-000100.pt')   # our snapshot, or a G_sparse/G_dense export

NVlabs pickles store every network through `torch_utils.persistence`: a call to
`_reconstruct_persistent_obj(meta)` whose meta carries the full source of the defining module, and
upstream's loader executes that source. Here the pickle is read by a restricted unpickler that knows a
short allow-list of globals (the tensor rebuild functions, OrderedDict, EasyDict, numpy scalars and
dtypes) and refuses every other global by name. `_reconstruct_persistent_obj` is replaced by a function
that keeps the recorded meta as plain data: the embedded source is never looked at again. Tensor
storages are read with torch.load(weights_only=True) (torch's own `_load_from_bytes` would unpickle them
unsafely). Each network is then rebuilt as OUR class (training/networks.py) from its recorded
init_kwargs, after validation, and its weights are copied by key, strictly (same names, same shapes).
Our networks compute what upstream's compute for the same weights, so the outputs are upstream's.

Errors are `NetworkFileError` naming the file and the problem.
"""
from __future__ import annotations

import collections
import io
import os
import pickle
import warnings

import numpy as np
import torch

import dnnlib
import training.dataset
from training import networks
from vendor.common import checks, safeload
from vendor.common.safeload import CheckpointError

__all__ = ['NetworkFileError', 'load_network', 'from_checkpoint_dict', 'generator',
           'NETWORK_CLASSES', 'DATASET_CLASSES', 'AUGMENT_CLASSES']

GENERATOR = 'training.networks.Generator'
DISCRIMINATOR = 'training.networks.Discriminator'
NETWORK_CLASSES = {GENERATOR: networks.Generator, DISCRIMINATOR: networks.Discriminator}
# Specs that other code constructs later (metrics build the dataset, training the augment pipe):
# checked here so that a file can only ever name these. The dataset list is every Dataset class that
# our own training/dataset.py defines (so a new lazy reader there is allowed without editing this file).
DATASET_CLASSES = tuple(sorted(
    f'training.dataset.{name}' for name, obj in vars(training.dataset).items()
    if isinstance(obj, type) and issubclass(obj, torch.utils.data.Dataset) and obj.__module__ == 'training.dataset'))
AUGMENT_CLASSES = ('training.augment.AugmentPipe',)
_OTHER_SPEC_CLASSES = {
    'loss_kwargs': ('training.loss.StyleGAN2Loss',),
    'G_opt_kwargs': ('torch.optim.Adam',),
    'D_opt_kwargs': ('torch.optim.Adam',),
}
# Recorded sizes beyond these are refused before anything is allocated (a 1024-px network has
# channel_base 32768; nothing legitimate comes near 2**20).
_MAX_INT = 2 ** 20
_MAX_RESOLUTION = 4096


class NetworkFileError(CheckpointError):
    """A network file is missing, unreadable, unsafe or does not describe a StyleGAN2-ADA network."""


class _Refused(Exception):
    """Raised inside the unpickler; turned into NetworkFileError naming the file."""


# ---------------------------------------------------------------------------------------------
# The restricted unpickler.

class _Record:
    """Stands for one persistent network object of the pickle: its recorded class name and state,
    as plain data. Nothing of the recorded class is ever created."""
    __slots__ = ('class_name', 'state')

    def __init__(self, class_name, state):
        self.class_name = class_name
        self.state = state


class _EasyDict(dict):
    """dnnlib.util.EasyDict as read from a pickle: just its items (attribute access is not needed)."""


def _reconstruct_persistent_obj(meta):
    if not isinstance(meta, dict) or meta.get('type') != 'class':
        raise _Refused('a persistent object of the pickle has no class record (not an NVlabs network pickle)')
    class_name, state = meta.get('class_name'), meta.get('state')
    if not isinstance(class_name, str) or not isinstance(state, dict):
        raise _Refused('a persistent object of the pickle has a malformed class record')
    return _Record(class_name, state)  # meta['module_src'] is dropped unread: it is never executed


def _load_storage(data):
    """A storage payload (a legacy torch.save of one storage), read with weights_only=True."""
    if not isinstance(data, (bytes, bytearray)):
        raise _Refused('a tensor storage of the pickle is not a byte string')
    try:
        storage = torch.load(io.BytesIO(bytes(data)), map_location='cpu', weights_only=True)
    except Exception as error:  # noqa: BLE001  (unsafe, truncated or foreign payloads alike)
        raise _Refused(f'a tensor storage of the pickle was refused: {safeload._describe_torch_error(error)}') from None
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise _Refused(f'a tensor storage payload holds a {type(storage).__name__}, not a storage')
    return storage


def _check_ints(values, what):
    if not isinstance(values, (tuple, list)) or not all(isinstance(v, int) and 0 <= v < 2 ** 40 for v in values):
        raise _Refused(f'a tensor of the pickle has a malformed {what}: {values!r}')
    return tuple(values)


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, metadata=None):
    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise _Refused('a tensor of the pickle is not backed by a storage')
    if hooks or metadata:
        raise _Refused('a tensor of the pickle carries hooks or metadata')
    size, stride = _check_ints(size, 'size'), _check_ints(stride, 'stride')
    (offset,) = _check_ints([offset], 'offset')
    if len(size) != len(stride):
        raise _Refused('a tensor of the pickle has a size and a stride of different lengths')
    if isinstance(storage, torch.TypedStorage):
        dtype, untyped = storage.dtype, storage._untyped_storage
        count = untyped.nbytes() // dtype.itemsize
    else:
        dtype, untyped, count = torch.uint8, storage, storage.nbytes()
    needed = 0 if 0 in size else offset + 1 + sum((n - 1) * s for n, s in zip(size, stride))
    if needed > count:
        raise _Refused(f'a tensor of the pickle needs {needed} values but its storage holds {count} '
                       f'(tampered or truncated storage)')
    return torch.empty((0,), dtype=dtype).set_(untyped, offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, hooks=None, state=None):
    if not isinstance(data, torch.Tensor):
        raise _Refused('a parameter of the pickle is not a tensor')
    if hooks or state:
        raise _Refused('a parameter of the pickle carries hooks or extra state')
    return data


def _np_dtype(spec, align=False, copy=True):
    if not isinstance(spec, str):
        raise _Refused(f'numpy.dtype of the pickle is built from {type(spec).__name__}, not a type code')
    try:
        dtype = np.dtype(spec)
    except TypeError:
        raise _Refused(f'numpy.dtype({spec!r}) of the pickle is not a numeric type') from None
    if dtype.kind not in 'biufc':
        raise _Refused(f'numpy.dtype({spec!r}) of the pickle is not a numeric type')
    return dtype


def _np_scalar(dtype, data=None):
    if not isinstance(dtype, np.dtype) or dtype.kind not in 'biufc':
        raise _Refused('a numpy scalar of the pickle is not numeric')
    if not isinstance(data, bytes) or len(data) != dtype.itemsize:
        raise _Refused('a numpy scalar of the pickle has a malformed value')
    return np.frombuffer(data, dtype=dtype)[0]


def _reconstructor(cls, base, state=None):
    """copyreg._reconstructor (protocol 0/1 pickles of dict subclasses), for our own dict types only."""
    if cls not in (_EasyDict, collections.OrderedDict, dict) or base not in (object, dict):
        raise _Refused('copyreg._reconstructor of the pickle asks for a class that is not a plain dict')
    return cls(state or {})


def _latin1_bytes(text, encoding='latin1'):
    """_codecs.encode as protocol-2 pickles use it to spell a bytes object."""
    if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
        raise _Refused('_codecs.encode of the pickle is not the protocol-2 spelling of bytes')
    return text.encode('latin1')


_ALLOWED_GLOBALS = {
    'torch_utils.persistence._reconstruct_persistent_obj': _reconstruct_persistent_obj,
    'torch._utils._rebuild_tensor_v2': _rebuild_tensor,
    'torch._utils._rebuild_parameter': _rebuild_parameter,
    'torch._utils._rebuild_parameter_with_state': _rebuild_parameter,
    'torch.storage._load_from_bytes': _load_storage,
    'collections.OrderedDict': collections.OrderedDict,
    'dnnlib.util.EasyDict': _EasyDict,
    'numpy.dtype': _np_dtype,
    'numpy.core.multiarray.scalar': _np_scalar,    # numpy < 2
    'numpy._core.multiarray.scalar': _np_scalar,   # numpy >= 2
    'copyreg._reconstructor': _reconstructor,
    '_codecs.encode': _latin1_bytes,
    'builtins.object': object,
    'builtins.dict': dict,
    'builtins.list': list,
    'builtins.tuple': tuple,
    'builtins.set': set,
    'builtins.frozenset': frozenset,
}
_RENAMED_MODULES = {'__builtin__': 'builtins', 'copy_reg': 'copyreg'}  # Python 2 era protocol-2 names


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        full = f'{_RENAMED_MODULES.get(module, module)}.{name}'
        if full in _ALLOWED_GLOBALS:
            return _ALLOWED_GLOBALS[full]
        raise _Refused(f'refused: the pickle names the global {full}, which is not on the allow-list of '
                       f'an NVlabs network pickle (nothing from the file was run)')

    def persistent_load(self, pid):
        raise _Refused('refused: the pickle holds persistent ids (a torch.save stream, not an NVlabs pickle)')


def _unpickle(path):
    with open(path, 'rb') as handle, warnings.catch_warnings():
        # Storages come back as TypedStorage, which torch flags as deprecated; that is the file's format.
        warnings.filterwarnings('ignore', message='TypedStorage is deprecated')
        try:
            return _RestrictedUnpickler(handle).load()
        except _Refused as error:
            raise NetworkFileError(f'{path}: {error}') from None
        except RecursionError:
            raise NetworkFileError(f'{path}: the pickle is nested too deeply') from None
        except Exception as error:  # noqa: BLE001  truncated or corrupt streams raise many types
            raise NetworkFileError(f'{path}: not a readable network pickle (truncated or corrupt: '
                                   f'{type(error).__name__}: {str(error)[:200]})') from None


# ---------------------------------------------------------------------------------------------
# Recorded networks -> our networks.

def _check_sizes(obj, where):
    """Refuse absurd recorded sizes before anything is allocated."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key == 'img_resolution' and isinstance(value, int) and not 4 <= value <= _MAX_RESOLUTION:
                raise NetworkFileError(f'{where}.img_resolution = {value}: outside [4, {_MAX_RESOLUTION}]')
            _check_sizes(value, f'{where}.{key}')
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            _check_sizes(value, f'{where}[{i}]')
    elif isinstance(obj, int) and not isinstance(obj, bool) and abs(obj) > _MAX_INT:
        raise NetworkFileError(f'{where} = {obj}: implausibly large')


def _construct(class_name, kwargs, where):
    try:
        kwargs = safeload.plain_data(kwargs, where)
        checks.plain_finite(kwargs, where)  # a NaN lr_multiplier, clamp or beta would poison every output
        _check_sizes(kwargs, where)
        return safeload.construct(class_name, kwargs, {class_name: NETWORK_CLASSES[class_name]}, where)
    except CheckpointError as error:
        raise NetworkFileError(str(error)) from None


def _flatten(record, module, prefix, out, where):
    """Collect the record's tensors under state_dict names, checking that the recorded module tree
    has our classes at the same places (a different architecture is refused here, by name)."""
    if type(module).__name__ != record.class_name:
        place = prefix.rstrip('.') or 'the network itself'
        raise NetworkFileError(f'{where}: {place} is a recorded {record.class_name!r}, our network has a '
                               f'{type(module).__name__!r} there (a different architecture)')
    state = record.state
    for key in ('_parameters', '_buffers', '_modules'):
        if not isinstance(state.get(key, {}), dict):
            raise NetworkFileError(f'{where}: {prefix}{key} is not a dict')
    skip = state.get('_non_persistent_buffers_set') or ()
    for group in ('_parameters', '_buffers'):
        for name, tensor in state.get(group, {}).items():
            if tensor is None or (group == '_buffers' and name in skip):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise NetworkFileError(f'{where}: {prefix}{name} is a {type(tensor).__name__}, not a tensor')
            out[prefix + name] = tensor
    ours = dict(module.named_children())
    theirs = {name: child for name, child in state.get('_modules', {}).items() if child is not None}
    if set(ours) != set(theirs):
        extra, missing = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
        raise NetworkFileError(f'{where}: the recorded {record.class_name} at {prefix.rstrip(".") or "top level"} has '
                               f'submodules {extra} that ours lacks and lacks {missing} (a different config)')
    for name, child in theirs.items():
        if not isinstance(child, _Record):
            raise NetworkFileError(f'{where}: submodule {prefix}{name} is a {type(child).__name__}, not a recorded layer')
        _flatten(child, ours[name], f'{prefix}{name}.', out, where)


def _finite(tensor, key, where):
    try:
        checks.tensor(tensor, key)
    except CheckpointError as error:
        raise NetworkFileError(f'{where}: {error}') from None


@torch.no_grad()
def _copy_strict(net, tensors, where):
    own = net.state_dict()
    missing = [k for k in own if k not in tensors]
    unexpected = [k for k in tensors if k not in own]
    if missing or unexpected:
        raise NetworkFileError(f'{where}: the weights do not match the recorded config '
                               f'(missing {missing[:5]}, unexpected {unexpected[:5]})')
    for key, target in own.items():
        source = tensors[key]
        if tuple(source.shape) != tuple(target.shape):
            raise NetworkFileError(f'{where}: {key} has shape {tuple(source.shape)} in the file but '
                                   f'{tuple(target.shape)} for the recorded config')
        if source.dtype.is_floating_point != target.dtype.is_floating_point:
            raise NetworkFileError(f'{where}: {key} is {source.dtype} in the file, expected {target.dtype}')
        _finite(source, key, where)
        target.copy_(source)


def _build_recorded(record, expected, where, device):
    if not isinstance(record, _Record):
        raise NetworkFileError(f'{where}: is a {type(record).__name__}, not a recorded network')
    if record.class_name != expected:
        raise NetworkFileError(f'{where}: is a recorded {record.class_name!r}, expected a {expected!r}')
    init_args = record.state.get('_init_args', ())
    init_kwargs = record.state.get('_init_kwargs')
    if init_args not in ((), [], None):
        raise NetworkFileError(f'{where}: records positional constructor arguments, which NVlabs networks never have')
    if not isinstance(init_kwargs, dict):
        raise NetworkFileError(f'{where}: records no init_kwargs, so its config is unknown')
    net = _construct(f'training.networks.{expected}', init_kwargs, f'{where}.init_kwargs')
    tensors = {}
    _flatten(record, net, '', tensors, where)
    _copy_strict(net, tensors, where)
    return net.eval().requires_grad_(False).to(device)


def _from_nvlabs(data, path, device):
    if not isinstance(data, dict) or not any(isinstance(data.get(k), _Record) for k in ('G', 'D', 'G_ema')):
        found = sorted(map(str, data))[:8] if isinstance(data, dict) else type(data).__name__
        raise NetworkFileError(f'{path}: not a StyleGAN2-ADA network pickle (no recorded G, D or G_ema; found {found})')
    result = _empty_result('nvlabs-pkl')
    for name, expected in (('G', 'Generator'), ('D', 'Discriminator'), ('G_ema', 'Generator')):
        if data.get(name) is not None:
            result[name] = _build_recorded(data[name], expected, f'{path}: {name}', device)
    try:
        if data.get('training_set_kwargs') is not None:
            result['training_set_kwargs'] = _dataset_spec(data['training_set_kwargs'], 'training_set_kwargs')
        pipe = data.get('augment_pipe')
        if pipe is not None:
            if not isinstance(pipe, _Record) or pipe.class_name != 'AugmentPipe':
                raise NetworkFileError(f'augment_pipe: is not a recorded AugmentPipe')
            spec = dict(safeload.plain_data(pipe.state.get('_init_kwargs') or {}, 'augment_pipe.init_kwargs'),
                        class_name=AUGMENT_CLASSES[0])
            result['augment_kwargs'] = checks.plain_finite(
                safeload.check_spec(spec, AUGMENT_CLASSES, 'augment_pipe.init_kwargs'), 'augment_pipe.init_kwargs')
    except CheckpointError as error:
        raise NetworkFileError(f'{path}: {error}') from None
    return result


# ---------------------------------------------------------------------------------------------
# Our own .pt files (training snapshots and G_sparse / G_dense exports).

def _dataset_spec(spec, where):
    spec = checks.plain_finite(safeload.check_spec(spec, DATASET_CLASSES, where), where)
    if 'path' in spec and not isinstance(spec['path'], str):
        raise CheckpointError(f'{where}.path: not a string')
    return spec


@torch.no_grad()
def _copy_by_name(net, state, where):
    """Every tensor of our network must be in `state` with its shape; extra entries (the mask
    buffers a patched run adds) are left to whoever knows them."""
    if not isinstance(state, dict):
        raise NetworkFileError(f'{where}: is a {type(state).__name__}, not a state_dict')
    own = net.state_dict()
    missing = [k for k in own if k not in state]
    if missing:
        raise NetworkFileError(f'{where}: lacks {len(missing)} tensors of the recorded config, e.g. {missing[:3]}')
    for key, target in own.items():
        source = state[key]
        if not isinstance(source, torch.Tensor) or tuple(source.shape) != tuple(target.shape):
            shape = tuple(source.shape) if isinstance(source, torch.Tensor) else type(source).__name__
            raise NetworkFileError(f'{where}: {key} is {shape} in the file but {tuple(target.shape)} '
                                   f'for the recorded config')
        _finite(source, key, where)
        target.copy_(source)


def from_checkpoint_dict(data, where='checkpoint', device='cpu'):
    """The load_network result for an already-loaded dict of one of our .pt files."""
    if not isinstance(data, dict) or 'G_kwargs' not in data and 'D_kwargs' not in data:
        keys = sorted(map(str, data))[:8] if isinstance(data, dict) else type(data).__name__
        raise NetworkFileError(f'{where}: not a StyleGAN2-ADA training snapshot or export (no G_kwargs/D_kwargs entry; found {keys})')
    try:
        common = safeload.plain_data(data.get('common_kwargs', {}), 'common_kwargs')
        if not isinstance(common, dict):
            raise CheckpointError('common_kwargs: not a dict')
        safeload.refuse_nested_names(common, 'common_kwargs')
        specs = {}
        for key, class_name in (('G_kwargs', GENERATOR), ('D_kwargs', DISCRIMINATOR)):
            if key in data:
                specs[key] = safeload.check_spec(data[key], (class_name,), key)
        result = _empty_result('snapshot' if all(k in data for k in ('G', 'D', 'G_ema')) else 'export')
        if data.get('training_set_kwargs'):
            result['training_set_kwargs'] = _dataset_spec(data['training_set_kwargs'], 'training_set_kwargs')
        if data.get('augment_kwargs'):
            result['augment_kwargs'] = checks.plain_finite(
                safeload.check_spec(data['augment_kwargs'], AUGMENT_CLASSES, 'augment_kwargs'), 'augment_kwargs')
        for key, allowed in _OTHER_SPEC_CLASSES.items():
            if data.get(key):
                safeload.check_spec(data[key], allowed, key)
    except CheckpointError as error:
        raise NetworkFileError(f'{where}: {error}') from None
    for name, key in (('G', 'G_kwargs'), ('G_ema', 'G_kwargs'), ('D', 'D_kwargs')):
        if name not in data:
            continue
        if key not in specs:
            raise NetworkFileError(f'{where}: holds {name} but no {key} to build it from')
        spec = dict(specs[key])
        class_name = spec.pop('class_name')
        net = _construct(class_name, dict(spec, **common), f'{where}: {key}')
        _copy_by_name(net, data[name], f'{where}: {name}')
        result[name] = net.eval().requires_grad_(False).to(device)
    if result['kind'] == 'snapshot':
        result['state'] = data
    return result


def _empty_result(kind):
    return dict(kind=kind, G=None, D=None, G_ema=None, state=None, training_set_kwargs=None, augment_kwargs=None)


# ---------------------------------------------------------------------------------------------

def load_network(source, *, cache_dir=None, device='cpu'):
    """Read an NVlabs .pkl, a URL of one (cached) or one of our .pt files; see the module docstring.

    Returns {'kind': 'nvlabs-pkl' | 'snapshot' | 'export', 'G', 'D', 'G_ema' (our networks, or None
    when the file has no such entry), 'state' (the snapshot dict when kind == 'snapshot'),
    'training_set_kwargs' and 'augment_kwargs' (validated plain data, never constructed here)}."""
    source = os.fspath(source)
    path = source
    if dnnlib.util.is_url(source, allow_file_urls=True):
        try:
            path = dnnlib.util.open_url(source, cache_dir=cache_dir, return_filename=True, verbose=False)
        except FileNotFoundError:
            raise NetworkFileError(f'{source}: network file not found') from None
        except (OSError, ValueError) as error:
            raise NetworkFileError(f'{source}: cannot be downloaded ({error})') from None
    if not os.path.isfile(path):
        raise NetworkFileError(f'{source}: network file not found')
    try:
        if safeload.is_zip_checkpoint(path):
            return from_checkpoint_dict(safeload.load_checkpoint(path, map_location='cpu'), source, device)
    except NetworkFileError:
        raise
    except CheckpointError as error:
        raise NetworkFileError(str(error)) from None
    data = _unpickle(path)
    if isinstance(data, int) and not isinstance(data, bool):  # legacy torch.save: magic number first
        try:
            return from_checkpoint_dict(safeload.load_checkpoint(path, map_location='cpu'), source, device)
        except NetworkFileError:
            raise
        except CheckpointError as error:
            raise NetworkFileError(str(error)) from None
    return _from_nvlabs(data, source, device)


def generator(result):
    """The generator to render or evaluate: G_ema when the file has one, else G."""
    net = result['G_ema'] if result['G_ema'] is not None else result['G']
    if net is None:
        raise NetworkFileError('the file holds no generator (neither G_ema nor G)')
    return net
