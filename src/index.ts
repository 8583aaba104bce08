// ctxsparse library API: load a model, tokenize, stream tokens, read logits.
export { loadModel, loadTokenizer, type Model, type LoadOptions } from './model/load.js';
export type { ModelConfig, Arch } from './model/config.js';
export { Forward, type Tap, type TapName } from './model/forward.js';
export { KVCache } from './model/kv-cache.js';
export { Session, type SessionOptions, type GenerateOptions, type TokenEvent, type FinishReason } from './generate/session.js';
export { Sampler, argmax, topLogits, type SamplerOptions } from './generate/sampler.js';
export { renderChat, chatPromptIds, type ChatMessage } from './generate/chat.js';
export { perplexity, type PerplexityOptions, type PerplexityResult } from './eval/perplexity.js';
export { Evaluator, type EvalResult, type EvalOptions } from './eval/harness.js';
export { loadTask, TASK_NAMES, type Task } from './eval/tasks.js';
export { sweep, type SweepResults, type SweepOptions } from './eval/sweep.js';
export { readGGUFHeader, readGGUFData, Metadata, type GGUFHeader, type GGUFValue, type GGUFTensorInfo } from './formats/gguf.js';
export { type Tokenizer, type EncodeOptions, StreamDecoder } from './tokenizer/index.js';
export { type Kernels } from './kernels/kernels.js';
export { refKernels } from './kernels/ref/index.js';
export { createWasmKernels, relaxedSimdAvailable, type WasmKernels, type WasmKernelOptions } from './kernels/wasm/index.js';
export { bench, benchModel } from './bench/bench.js';
export { densePolicy, type SparsityPolicy, type Selection, type LinearSite } from './sparsity/policy.js';
export {
  fromProfile, MeasuredPolicy, TealPolicy, WinaPolicy, CatsPolicy, ChessPolicy, METHODS, loadProfile, saveProfile, checkProfileModel, modelSha256,
  type Profile, type Method, type Allocation, type RealizedDensity, type Site,
} from './sparsity/index.js';
export { calibrate, calibrationChunks, defaultCalibrationFile, type CalibrateOptions } from './sparsity/calibrate.js';
export { CATALOG, DEFAULT_MODEL, resolveModel } from './models/catalog.js';
export { pull } from './models/pull.js';
export { CtxError } from './errors.js';
