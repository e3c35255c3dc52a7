"""Generic utilities used by the training scripts: attribute dicts, logging to a file,
construct-by-name for configs, time formatting and a cached URL/path opener."""
import hashlib
import importlib
import io
import os
import re
import sys
import tempfile
import types
import urllib.parse
import urllib.request
from typing import Any


class EasyDict(dict):
    """A dict whose keys can also be read and written as attributes (configs read nicer)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name)

    def __setattr__(self, name: str, value: Any) -> None:
        self[name] = value

    def __delattr__(self, name: str) -> None:
        del self[name]


class Logger:
    """Mirrors everything written to stdout/stderr into a log file, so a run directory keeps
    the console output. Use as a context manager or call close()."""

    def __init__(self, file_name: str = None, file_mode: str = 'w', should_flush: bool = True):
        self.file = open(file_name, file_mode) if file_name is not None else None
        self.should_flush = should_flush
        self.stdout = sys.stdout
        self.stderr = sys.stderr
        sys.stdout = self
        sys.stderr = self

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc_value, traceback):
        self.close()

    def write(self, text) -> None:
        if isinstance(text, bytes):
            text = text.decode()
        if len(text) == 0:  # some consumers write empty strings to probe the stream
            return
        if self.file is not None:
            self.file.write(text)
        self.stdout.write(text)
        if self.should_flush:
            self.flush()

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()
        self.stdout.flush()

    def close(self) -> None:
        self.flush()
        # Only restore the streams if they still point at us (nested loggers).
        if sys.stdout is self:
            sys.stdout = self.stdout
        if sys.stderr is self:
            sys.stderr = self.stderr
        if self.file is not None:
            self.file.close()
            self.file = None


def format_time(seconds) -> str:
    """Human-readable duration, e.g. '1h 02m 03s' (same style as upstream's progress lines)."""
    s = int(round(seconds))
    if s < 60:
        return f'{s}s'
    if s < 60 * 60:
        return f'{s // 60}m {s % 60:02d}s'
    if s < 24 * 60 * 60:
        return f'{s // 3600}h {(s // 60) % 60:02d}m {s % 60:02d}s'
    return f'{s // 86400}d {(s // 3600) % 24:02d}h {(s // 60) % 60:02d}m'


def ask_yes_no(question: str) -> bool:
    while True:
        answer = input(f'{question} [y/n]: ').strip().lower()
        if answer in ('y', 'yes'):
            return True
        if answer in ('n', 'no'):
            return False


# ----------------------------------------------------------------------------
# Construct objects from "module.sub.Name" strings (configs name their classes this way).

def get_module_from_obj_name(obj_name: str):
    """Split 'a.b.c.Name' into the longest importable module and the attribute path inside it."""
    if not isinstance(obj_name, str) or not obj_name:
        raise ValueError(f'obj_name must be a non-empty dotted name, got {obj_name!r}')
    parts = obj_name.split('.')
    for split in range(len(parts) - 1, 0, -1):
        module_name = '.'.join(parts[:split])
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as err:
            # Keep looking only if the missing module is the one we tried (not a broken import inside it).
            if err.name is not None and module_name.startswith(err.name):
                continue
            raise
        local_name = '.'.join(parts[split:])
        try:
            get_obj_from_module(module, local_name)
        except AttributeError:
            continue
        return module, local_name
    raise ValueError(f'cannot find an object named {obj_name!r}')


def get_obj_from_module(module: types.ModuleType, obj_name: str) -> Any:
    obj = module
    for part in obj_name.split('.'):
        obj = getattr(obj, part)
    return obj


def get_obj_by_name(name: str) -> Any:
    module, local_name = get_module_from_obj_name(name)
    return get_obj_from_module(module, local_name)


def call_func_by_name(*args, func_name: str = None, **kwargs) -> Any:
    if func_name is None:
        raise ValueError('func_name must be given')
    func = get_obj_by_name(func_name)
    if not callable(func):
        raise ValueError(f'{func_name!r} is not callable')
    return func(*args, **kwargs)


def construct_class_by_name(*args, class_name: str = None, **kwargs) -> Any:
    """Instantiate the class named by `class_name` with the remaining arguments."""
    if class_name is None:
        raise ValueError('class_name must be given')
    return call_func_by_name(*args, func_name=class_name, **kwargs)


def get_top_level_function_name(obj: Any) -> str:
    module = obj.__module__
    if module == '__main__':
        module = os.path.splitext(os.path.basename(sys.modules[module].__file__))[0]
    return module + '.' + obj.__name__


# ----------------------------------------------------------------------------
# Files and URLs.

_dnnlib_cache_dir = None


def set_cache_dir(path: str) -> None:
    global _dnnlib_cache_dir
    _dnnlib_cache_dir = path


def make_cache_dir_path(*paths: str) -> str:
    """Cache folder: set_cache_dir(), else $DNNLIB_CACHE_DIR, else ~/.cache/dnnlib."""
    if _dnnlib_cache_dir is not None:
        return os.path.join(_dnnlib_cache_dir, *paths)
    if 'DNNLIB_CACHE_DIR' in os.environ:
        return os.path.join(os.environ['DNNLIB_CACHE_DIR'], *paths)
    return os.path.join(os.path.expanduser('~'), '.cache', 'dnnlib', *paths)


def is_url(obj: Any, allow_file_urls: bool = False) -> bool:
    if not isinstance(obj, str) or '://' not in obj:
        return False
    if allow_file_urls and obj.startswith('file://'):
        return True
    try:
        res = urllib.parse.urlparse(obj)
        return bool(res.scheme) and bool(res.netloc) and '.' in res.netloc
    except ValueError:
        return False


def open_url(url: str, cache_dir: str = None, num_attempts: int = 3, verbose: bool = True,
             return_filename: bool = False, cache: bool = True):
    """Open a local path, file:// URL or http(s) URL as a binary file object.
    Downloads are cached under `cache_dir` (default make_cache_dir_path('downloads')) by URL hash
    and written atomically, so an interrupted download never leaves a half file in the cache."""
    if num_attempts < 1:
        raise ValueError('num_attempts must be >= 1')
    if not re.match(r'^[a-z]+://', url):
        if not os.path.isfile(url):
            raise FileNotFoundError(f'open_url: no such file: {url}')
        return url if return_filename else open(url, 'rb')
    if url.startswith('file://'):
        filename = urllib.parse.urlparse(url).path
        if re.match(r'^/[a-zA-Z]:', filename):
            filename = filename[1:]
        if not os.path.isfile(filename):
            raise FileNotFoundError(f'open_url: no such file: {url}')
        return filename if return_filename else open(filename, 'rb')
    if return_filename and not cache:
        raise ValueError('return_filename=True needs cache=True')

    if cache_dir is None:
        cache_dir = make_cache_dir_path('downloads')
    url_md5 = hashlib.md5(url.encode('utf-8')).hexdigest()
    if cache:
        hits = [f for f in (os.listdir(cache_dir) if os.path.isdir(cache_dir) else []) if f.startswith(url_md5 + '_')]
        if len(hits) == 1:
            path = os.path.join(cache_dir, hits[0])
            return path if return_filename else open(path, 'rb')

    data = None
    last_err = None
    for attempt in range(num_attempts):
        try:
            if verbose:
                print(f'Fetching {url} ...', end='', flush=True)
            with urllib.request.urlopen(url) as res:
                data = res.read()
            if verbose:
                print(' ok')
            break
        except Exception as err:  # network errors of all kinds: retry, then report the last one
            last_err = err
            if verbose:
                print(' error, retrying' if attempt + 1 < num_attempts else ' error')
    if data is None:
        raise IOError(f'open_url: could not download {url}: {last_err}')

    if cache:
        safe_name = re.sub(r'[^0-9a-zA-Z-._]', '_', os.path.basename(urllib.parse.urlparse(url).path) or 'file')
        path = os.path.join(cache_dir, url_md5 + '_' + safe_name)
        os.makedirs(cache_dir, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=cache_dir, prefix='.tmp_')
        with os.fdopen(fd, 'wb') as f:
            f.write(data)
        os.replace(tmp, path)
        if return_filename:
            return path
    return io.BytesIO(data)
