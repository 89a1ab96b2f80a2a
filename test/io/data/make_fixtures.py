"""Writes the small checkpoint and pickle fixtures of test/io (run once; the outputs are committed).

    /usr/bin/python3 test/io/data/make_fixtures.py     # Debian python3-torch 1.13.1

The tests never run Python; they rebuild the expected values from the formulas below
(base = arange(24) reshaped (2, 3, 4), and so on), so nothing is hard-coded from this run.
"""
import collections
import json
import os
import pickle

import numpy as np
import torch

here = os.path.dirname(os.path.abspath(__file__))

base = torch.arange(24, dtype=torch.float32).reshape(2, 3, 4)
tensors = collections.OrderedDict()
tensors['f32'] = base.clone()
tensors['f32_transposed'] = base.transpose(0, 2)  # non-contiguous view, shape (4, 3, 2)
tensors['f32_offset_view'] = base[1]  # storage offset 12, shares the storage of the next one
tensors['f32_shared_base'] = base
tensors['f32_sliced'] = base[:, 1:, ::2]  # strides (12, 4, 2), offset 4
tensors['f64'] = base.double() / 8
tensors['f16'] = base.half() / 8
tensors['bf16'] = base.bfloat16() / 8
tensors['i64'] = base.long() - 12
tensors['i32'] = base.int() - 12
tensors['i16'] = base.short() - 12
tensors['i8'] = base.char() - 12
tensors['u8'] = base.to(torch.uint8)
tensors['bool'] = base > 10
tensors['scalar'] = torch.tensor(2.5)
tensors['empty'] = torch.zeros(0, 3)
obj = {
    'tensors': tensors,
    'param': torch.nn.Parameter(base[0, 0].clone()),
    'size': torch.Size([2, 3]),
    'dtype': torch.float16,
    'numpy_f8': np.float64(0.25),
    'numpy_i8': np.int64(-7),
    'set': {1, 2},
    'bytes': b'\x00\xff',
    'nested': [1, (2, 3.5), {'k': None}],
    'big': 2**70,
    'neg': -(2**40),
}
torch.save(obj, os.path.join(here, 'dtypes.pt'))
torch.save(obj, os.path.join(here, 'dtypes_p4.pt'), pickle_protocol=4)
torch.save({'w': base}, os.path.join(here, 'legacy.pt'), _use_new_zipfile_serialization=False)
# an expanded view: size (5,), stride (0,) over a one-element storage
torch.save({'e': torch.ones(1).expand(5)}, os.path.join(here, 'expanded.pt'))

# Data-only pickles for every protocol (no globals beyond the allow-list).
value = {
    'ints': [0, 1, -1, 255, 256, 65535, 65536, -(2**31), 2**31 - 1, 2**31, 2**63, -(2**70)],
    'floats': [0.5, -1.25, 1e300, float('inf')],
    'str': ['', 'ascii', 'caf\u00e9', '\u2603 snow', 'a\nb'],
    'bytes': b'\x00\x01\xfe\xff',
    'tuple': (1, (2, (3,)), ()),
    'consts': [None, True, False],
    'dict': {1: 'one', 'two': 2},
    'ordered': collections.OrderedDict([('b', 1), ('a', 2)]),
    'set': {7},
    'frozenset': frozenset([8]),
    'bytearray': bytearray(b'xy'),
}
shared = [1, 2]
value['shared'] = [shared, shared]
pickles = {str(p): pickle.dumps(value, protocol=p).hex() for p in range(6)}
with open(os.path.join(here, 'pickles.json'), 'w') as f:
    json.dump({'source': 'pickle.dumps(value, protocol=p) in make_fixtures.py, CPython 3', 'pickles': pickles}, f, indent=1)
print('ok', {k: os.path.getsize(os.path.join(here, k)) for k in os.listdir(here)})
