// Weight IO: PyTorch checkpoints (restricted unpickler, no code runs), checkpoint layouts,
// safetensors and .npy.

export {
  type CheckpointKind,
  countElements,
  detectCheckpointKind,
  type ExtractOptions,
  extractStateDict,
} from './checkpoint.js';
export { decodeNpy, encodeNpy, type NpyArray, readNpy, writeNpy } from './npy.js';
export {
  BASE_GLOBALS,
  type GlobalHandler,
  isDict,
  isTuple,
  PyGlobal,
  PyObject,
  type PyValue,
  pyAttributes,
  type UnpickleOptions,
  unpickle,
} from './pickle.js';
export {
  decodeSafetensors,
  encodeSafetensors,
  readSafetensors,
  type SafetensorsFile,
  writeSafetensors,
} from './safetensors.js';
export {
  checkpointAllowList,
  listTensors,
  loadTorchCheckpoint,
  readTorchArchive,
  type TorchArchive,
  type TorchLoadOptions,
} from './torch.js';
export { type HostData, type HostDType, type HostTensor, isHostTensor, type StateDict } from './types.js';
