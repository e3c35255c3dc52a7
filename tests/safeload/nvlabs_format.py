"""Writes NVlabs-format network pickles for the tests (imported by test files; not a test module).

The structure is that of upstream's torch_utils.persistence (SPEC section 8): every network module is
pickled as a call `torch_utils.persistence._reconstruct_persistent_obj(meta)` where meta holds
type='class', version 6, the defining module's source (`module_src`), the class name and the object
state (the module's __dict__ with `_parameters`, `_buffers`, `_modules`, `_init_args`, `_init_kwargs`).
Tensors come as torch._utils._rebuild_tensor_v2 / _rebuild_parameter over torch.storage._load_from_bytes
payloads (each a legacy torch.save of one storage), numpy scalars as numpy.(_)core.multiarray.scalar over
numpy.dtype, configs as dnnlib.util.EasyDict, hook tables as collections.OrderedDict.

The module_src we embed writes a marker file when executed, so a test can prove nothing ran.
The pure-Python pickler lets us name those globals without importing upstream code.
"""
import collections
import copy
import io
import pickle

import numpy as np
import torch


class Global:
    """A reference to module.name written into the pickle as is (the object never exists here)."""

    def __init__(self, module, name):
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle insists that a reduce function be callable; it is never called
        raise AssertionError(f'{self.module}.{self.name} is only a name to write')


def marker_source(marker_path):
    return ("import pathlib\n"
            f"pathlib.Path({str(marker_path)!r}).write_text('module_src was executed')\n"
            "class Generator:\n    pass\n\nclass Discriminator:\n    pass\n")


class NVlabsPickler(pickle._Pickler):
    """pickle._Pickler that writes torch modules the way torch_utils.persistence does."""

    def __init__(self, file, protocol, module_src, init_kwargs, numpy_module='numpy.core.multiarray',
                 storage_override=None, native_tensors=False):
        super().__init__(file, protocol=protocol)
        self.native_tensors = native_tensors      # let torch's own __reduce_ex__ write the tensors
        self.module_src = module_src
        self.init_kwargs = init_kwargs            # {id(module): kwargs} for the top-level networks
        self.numpy_module = numpy_module
        self.storage_override = storage_override  # optional fn(bytes) -> bytes (tampering tests)

    def reducer_override(self, obj):
        if isinstance(obj, Global):
            return obj.name
        if self.native_tensors and isinstance(obj, torch.Tensor):
            return NotImplemented
        if isinstance(obj, torch.nn.Parameter):
            return (Global('torch._utils', '_rebuild_parameter'),
                    (obj.detach(), obj.requires_grad, collections.OrderedDict()))
        if isinstance(obj, torch.Tensor):
            storage = _StoragePayload(obj.detach().contiguous(), self.storage_override)
            return (Global('torch._utils', '_rebuild_tensor_v2'),
                    (storage, 0, tuple(obj.shape), tuple(obj.contiguous().stride()), False, collections.OrderedDict()))
        if isinstance(obj, _StoragePayload):
            return (Global('torch.storage', '_load_from_bytes'), (obj.payload(),))
        if isinstance(obj, torch.nn.Module):
            state = dict(obj.__dict__)
            state['_init_args'] = ()
            state['_init_kwargs'] = EasyDictOut(copy.deepcopy(self.init_kwargs.get(id(obj), {})))
            meta = dict(type='class', version=6, module_src=self.module_src, class_name=type(obj).__name__,
                        state=state)
            return (Global('torch_utils.persistence', '_reconstruct_persistent_obj'), (meta,))
        if isinstance(obj, EasyDictOut):
            return (Global('dnnlib.util', 'EasyDict'), (), None, None, iter(dict(obj).items()))
        if isinstance(obj, np.dtype):
            return (Global('numpy', 'dtype'), (obj.str[1:], False, True), obj.__reduce__()[2])
        if isinstance(obj, np.generic):
            return (Global(self.numpy_module, 'scalar'), (obj.dtype, obj.tobytes()))
        return NotImplemented

    def save_global(self, obj, name=None):
        if not isinstance(obj, Global):
            return super().save_global(obj, name)
        if self.proto >= 4:
            self.save(obj.module)
            self.save(obj.name)
            self.write(pickle.STACK_GLOBAL)
        else:
            self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode('utf-8'))
        self.memoize(obj)


class EasyDictOut(dict):
    """Marks a dict to be written as dnnlib.util.EasyDict."""


class _StoragePayload:
    def __init__(self, tensor, override=None):
        self.tensor, self.override = tensor, override

    def payload(self):
        buffer = io.BytesIO()
        # What torch's storage __reduce__ writes: a legacy (non-zip) torch.save of one typed storage.
        storage = torch.TypedStorage(wrap_storage=self.tensor.untyped_storage(), dtype=self.tensor.dtype,
                                     _internal=True)
        torch.save(storage, buffer, _use_new_zipfile_serialization=False)
        data = buffer.getvalue()
        return self.override(data) if self.override is not None else data


def write_nvlabs_pickle(path, marker_path, G=None, D=None, G_ema=None, G_kwargs=None, D_kwargs=None,
                        training_set_kwargs=None, protocol=4, numpy_module='numpy.core.multiarray',
                        storage_override=None, native_tensors=False, extra=None):
    """Write `path` like upstream's network-snapshot-*.pkl: dict(training_set_kwargs, G, D, G_ema,
    augment_pipe) with the networks persisted as above. Returns the path."""
    init_kwargs = {}
    for net, kwargs in ((G, G_kwargs), (G_ema, G_kwargs), (D, D_kwargs)):
        if net is not None:
            init_kwargs[id(net)] = kwargs or {}
    data = dict(training_set_kwargs=EasyDictOut(training_set_kwargs) if training_set_kwargs is not None else None,
                G=G, D=D, G_ema=G_ema, augment_pipe=None)
    data.update(extra or {})
    with open(path, 'wb') as handle:
        NVlabsPickler(handle, protocol, marker_source(marker_path), init_kwargs, numpy_module,
                      storage_override, native_tensors).dump(data)
    return path
