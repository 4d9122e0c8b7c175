// @hpdl/core: tensors, reverse-mode autograd, layers, losses, optimizers and checkpoints.
export { tf } from './tf.js';

export { HpdlError, ShapeError, BackendError, AutogradError, CheckpointError } from './errors.js';
export { initBackend, backendName, describeBackend, kernelTraits, BACKENDS, type BackendName, type KernelTraits } from './backend.js';
export { Tensor, tidy, tensor, fromTf, zeros, ones, full, arange, liveTensors, type DType, type TensorLike } from './tensor.js';
export {
  backward,
  backwardInput,
  WeightGradients,
  GradProduct,
  type Grad,
  noGrad,
  isGradEnabled,
  setGradEnabled,
  record,
  recordMulti,
  type BackwardFn,
  type MultiBackwardFn,
  type BackwardOptions,
} from './autograd.js';
export { checkpoint } from './checkpointing.js';
export { Generator, manualSeed, defaultGenerator, randn, rand, randint, permutation } from './random.js';

// Operations
export { add, sub, mul, div, maximum, minimum } from './ops/binary.js';
export { neg, exp, log, sqrt, rsqrt, square, abs, pow, scale, relu, leakyRelu, sigmoid, tanh, gelu } from './ops/unary.js';
export { sum, mean, max } from './ops/reduce.js';
export { reshape, flatten, transpose, slice, concat, stack, split, unstack, pad, gather, squeeze, unsqueeze } from './ops/movement.js';
export { matmul, linear } from './ops/matmul.js';
export { conv2d, type Conv2dOptions, type Padding } from './ops/conv.js';
export { maxPool2d, avgPool2d } from './ops/pool.js';
export { scaledDotProductAttention, type AttentionOptions } from './ops/attention.js';
export { softmax, logSoftmax, crossEntropy, mseLoss, dropout, layerNorm, batchNorm, type Reduction, type BatchNormStats } from './ops/nn.js';

// Modules
export { Module, Parameter, type BufferRef } from './nn/module.js';
export {
  Linear,
  TiedLinear,
  Conv2d,
  MaxPool2d,
  AvgPool2d,
  Flatten,
  Dropout,
  Embedding,
  ReLU,
  LeakyReLU,
  GELU,
  Tanh,
  Sigmoid,
  Softmax,
  LogSoftmax,
  Sequential,
  type WeightOptions,
  type Conv2dLayerOptions,
} from './nn/layers.js';
export { LayerNorm, BatchNorm } from './nn/norm.js';
export {
  MultiheadAttention,
  TransformerBlock,
  LearnedPositionalEmbedding,
  SinusoidalPositionalEmbedding,
  TokenEmbedding,
  sinusoidalTable,
  gpt,
  type AttentionLayerOptions,
  type GPTOptions,
} from './nn/transformer.js';
export { RNN, LSTM, GRU, type RecurrentOptions, type RecurrentState } from './nn/rnn.js';
export * as init from './nn/init.js';
export { type Init } from './nn/init.js';

// Losses (aliases that read as PyTorch's)
export { crossEntropy as crossEntropyLoss, mseLoss as mse } from './ops/nn.js';

// Optimizers
export { Optimizer, type OptimizerState } from './optim/optimizer.js';
export { SGD, type SGDOptions } from './optim/sgd.js';
export { Adam, AdamW, type AdamOptions } from './optim/adam.js';
export { clipGradNorm, sumOfSquaredGrads, scaleGrads } from './optim/clip.js';
export { LRScheduler, stepDecay, cosine, linearWarmup, type Schedule, type LRSchedulerState } from './optim/lr.js';

// Checkpoints
export { saveSafetensors, loadSafetensors, encodeSafetensors, decodeSafetensors, writeFileAtomic, type StoredTensor } from './io/safetensors.js';
export { saveCheckpoint, loadCheckpoint, type Extra, type CheckpointParts } from './io/checkpoint.js';
