import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { batchNorm, layerNorm, type BatchNormStats } from '../ops/nn.js';
import type { Tensor } from '../tensor.js';
import { Module, Parameter, type BufferRef } from './module.js';

/** Layer normalisation over the last dimension, with learnable scale and shift. */
export class LayerNorm extends Module {
  weight: Parameter | null;
  bias: Parameter | null;
  constructor(readonly dim: number, readonly eps = 1e-5, affine = true) {
    super();
    this.weight = affine ? new Parameter(tf.ones([dim])) : null;
    this.bias = affine ? new Parameter(tf.zeros([dim])) : null;
  }
  forward(x: Tensor): Tensor {
    return layerNorm(x, this.weight, this.bias, this.eps);
  }
}

/**
 * Batch normalisation over every axis but the last (channels last: [N, C] or NHWC), with running
 * statistics for evaluation, as PyTorch's BatchNorm1d/2d.
 */
export class BatchNorm extends Module {
  weight: Parameter | null;
  bias: Parameter | null;
  private readonly _stats: BatchNormStats;
  constructor(readonly channels: number, readonly momentum = 0.1, readonly eps = 1e-5, affine = true) {
    super();
    this.weight = affine ? new Parameter(tf.ones([channels])) : null;
    this.bias = affine ? new Parameter(tf.zeros([channels])) : null;
    this._stats = { runningMean: tf.keep(tf.zeros([channels])), runningVar: tf.keep(tf.ones([channels])) };
  }
  protected override ownBuffers(): [string, BufferRef][] {
    const s = this._stats;
    return [
      ['runningMean', { get: () => s.runningMean, set: (t) => (s.runningMean = t) }],
      ['runningVar', { get: () => s.runningVar, set: (t) => (s.runningVar = t) }],
    ];
  }
  forward(x: Tensor): Tensor {
    return batchNorm(x, this._stats, this.weight, this.bias, this.training, this.momentum, this.eps);
  }
}
