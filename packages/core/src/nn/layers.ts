import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { ShapeError, fmtShape } from '../errors.js';
import { conv2d, type Padding } from '../ops/conv.js';
import { linear } from '../ops/matmul.js';
import { gather, flatten } from '../ops/movement.js';
import { dropout, logSoftmax, softmax } from '../ops/nn.js';
import { avgPool2d, maxPool2d } from '../ops/pool.js';
import { gelu, leakyRelu, relu, sigmoid, tanh } from '../ops/unary.js';
import type { Generator } from '../random.js';
import { defaultGenerator } from '../random.js';
import type { Tensor } from '../tensor.js';
import { defaultInit, resolveInit, type Init } from './init.js';
import { Module, Parameter } from './module.js';

/** Options shared by layers with weights. */
export interface WeightOptions {
  /** Whether the layer has a bias (default true). */
  bias?: boolean;
  /** Weight initialiser, by name or function (default: PyTorch's uniform +-1/sqrt(fanIn)). */
  init?: Init | string;
  /** Generator to draw initial values from (default: the global one, see manualSeed). */
  generator?: Generator;
}

/** y = x @ weight + bias over the last dimension; weight has shape [in, out]. */
export class Linear extends Module {
  weight: Parameter;
  bias: Parameter | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, opts: WeightOptions = {}) {
    super();
    const gen = opts.generator ?? defaultGenerator();
    this.weight = new Parameter(resolveInit(opts.init, defaultInit)([inFeatures, outFeatures], inFeatures, outFeatures, gen));
    this.bias = opts.bias === false ? null : new Parameter(defaultInit([outFeatures], inFeatures, outFeatures, gen));
  }
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias);
  }
}

/**
 * A linear layer whose weight is another module's [out, in] parameter, used transposed: an output
 * head tied to the input embedding (Press & Wolf). The parameter stays one tensor: listed once by
 * `parameters()`, updated once, stored once in checkpoints; its gradient is the sum of both uses.
 */
export class TiedLinear extends Module {
  weight: Parameter;
  bias: Parameter | null;
  constructor(shared: Parameter, opts: { bias?: boolean } = {}) {
    super();
    if (shared.rank !== 2) throw new ShapeError(`TiedLinear: the shared weight must be a matrix [out, in], found shape ${fmtShape(shared.shape)}`);
    this.weight = shared;
    this.bias = opts.bias ? new Parameter(tf.zeros([shared.shape[0]!])) : null;
  }
  forward(x: Tensor): Tensor {
    return linear(x, this.weight, this.bias, { transposed: true });
  }
}

/** Options of Conv2d. */
export interface Conv2dLayerOptions extends WeightOptions {
  stride?: number | [number, number];
  padding?: Padding;
}

/** 2-D convolution over NHWC input; weight has shape [kh, kw, in, out]. */
export class Conv2d extends Module {
  weight: Parameter;
  bias: Parameter | null;
  readonly stride: number | [number, number];
  readonly padding: Padding;
  constructor(readonly inChannels: number, readonly outChannels: number, kernel: number | [number, number], opts: Conv2dLayerOptions = {}) {
    super();
    const [kh, kw] = typeof kernel === 'number' ? [kernel, kernel] : kernel;
    const gen = opts.generator ?? defaultGenerator();
    const fanIn = inChannels * kh * kw;
    this.weight = new Parameter(resolveInit(opts.init, defaultInit)([kh, kw, inChannels, outChannels], fanIn, outChannels * kh * kw, gen));
    this.bias = opts.bias === false ? null : new Parameter(defaultInit([outChannels], fanIn, outChannels, gen));
    this.stride = opts.stride ?? 1;
    this.padding = opts.padding ?? 'valid';
  }
  forward(x: Tensor): Tensor {
    return conv2d(x, this.weight, this.bias, { stride: this.stride, padding: this.padding });
  }
}

/** 2-D max pooling (NHWC); stride defaults to the kernel size. */
export class MaxPool2d extends Module {
  constructor(readonly kernel: number | [number, number], readonly stride?: number | [number, number], readonly padding: Padding = 'valid') {
    super();
  }
  forward(x: Tensor): Tensor {
    return maxPool2d(x, this.kernel, this.stride, this.padding);
  }
}

/** 2-D average pooling (NHWC); stride defaults to the kernel size. */
export class AvgPool2d extends Module {
  constructor(readonly kernel: number | [number, number], readonly stride?: number | [number, number], readonly padding: Padding = 'valid') {
    super();
  }
  forward(x: Tensor): Tensor {
    return avgPool2d(x, this.kernel, this.stride, this.padding);
  }
}

/** Flattens every dimension from `startDim` (default 1: keep the batch dimension). */
export class Flatten extends Module {
  constructor(readonly startDim = 1) {
    super();
  }
  forward(x: Tensor): Tensor {
    return flatten(x, this.startDim);
  }
}

/** Inverted dropout, active only in training mode. */
export class Dropout extends Module {
  constructor(readonly p = 0.5, private readonly _gen?: Generator) {
    super();
  }
  forward(x: Tensor): Tensor {
    return dropout(x, this.p, this.training, this._gen ?? defaultGenerator());
  }
}

/** A lookup table of `num` vectors of size `dim`, indexed by int32 tensors of any shape. */
export class Embedding extends Module {
  weight: Parameter;
  constructor(readonly num: number, readonly dim: number, opts: { generator?: Generator } = {}) {
    super();
    const gen = opts.generator ?? defaultGenerator();
    const v = new Float32Array(num * dim);
    for (let i = 0; i < v.length; i++) v[i] = gen.normal();
    this.weight = new Parameter(tf.tensor(v, [num, dim]));
  }
  forward(indices: Tensor): Tensor {
    if (indices.dtype !== 'int32') {
      throw new ShapeError(`Embedding: indices must be int32, found ${indices.dtype} of shape ${fmtShape(indices.shape)}`);
    }
    return gather(this.weight, indices);
  }
}

/** max(x, 0) */
export class ReLU extends Module {
  forward(x: Tensor): Tensor {
    return relu(x);
  }
}
/** Leaky ReLU with a negative slope. */
export class LeakyReLU extends Module {
  constructor(readonly slope = 0.01) {
    super();
  }
  forward(x: Tensor): Tensor {
    return leakyRelu(x, this.slope);
  }
}
/** GELU (exact, error-function form). */
export class GELU extends Module {
  forward(x: Tensor): Tensor {
    return gelu(x);
  }
}
/** Hyperbolic tangent. */
export class Tanh extends Module {
  forward(x: Tensor): Tensor {
    return tanh(x);
  }
}
/** Logistic sigmoid. */
export class Sigmoid extends Module {
  forward(x: Tensor): Tensor {
    return sigmoid(x);
  }
}
/** Softmax over the last axis. */
export class Softmax extends Module {
  forward(x: Tensor): Tensor {
    return softmax(x);
  }
}
/** Log-softmax over the last axis. */
export class LogSoftmax extends Module {
  forward(x: Tensor): Tensor {
    return logSoftmax(x);
  }
}

/** Runs modules one after another; children are named 0, 1, 2, ... */
export class Sequential extends Module {
  readonly layers: Module[];
  constructor(...layers: Module[]) {
    super();
    this.layers = layers;
  }
  override namedChildren(): [string, Module][] {
    return this.layers.map((m, i) => [String(i), m]);
  }
  forward(x: Tensor): Tensor {
    let h = x;
    for (const m of this.layers) h = m.forward(h);
    return h;
  }
  /** The number of layers. */
  get length(): number {
    return this.layers.length;
  }
}
