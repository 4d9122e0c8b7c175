import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { ShapeError, fmtShape } from '../errors.js';
import { add, mul, sub } from '../ops/binary.js';
import { linear } from '../ops/matmul.js';
import { split, stack, unstack } from '../ops/movement.js';
import { sigmoid, tanh } from '../ops/unary.js';
import { defaultGenerator, type Generator } from '../random.js';
import { Tensor } from '../tensor.js';
import { uniformInit } from './init.js';
import { Module, Parameter } from './module.js';

/** Options of the recurrent layers. */
export interface RecurrentOptions {
  /** Stacked layers (default 1). */
  numLayers?: number;
  /** Generator for initial values (default: the global one). */
  generator?: Generator;
}

/** Recurrent state: one hidden tensor [B, H] per layer, and for LSTM one cell tensor per layer. */
export interface RecurrentState {
  h: Tensor[];
  c?: Tensor[];
}

type Cell = (gx: Tensor, h: Tensor, c: Tensor | null) => [Tensor, Tensor | null];

/** One layer's weights: input-to-hidden [in, G*H], hidden-to-hidden [H, G*H], biases [G*H]. */
class RecurrentLayer extends Module {
  weightIh: Parameter;
  weightHh: Parameter;
  biasIh: Parameter;
  biasHh: Parameter;
  constructor(inSize: number, readonly hidden: number, gates: number, gen: Generator) {
    super();
    // PyTorch's initialisation for all recurrent weights: uniform in +-1/sqrt(hidden).
    const init = uniformInit(1 / Math.sqrt(hidden));
    this.weightIh = new Parameter(init([inSize, gates * hidden], inSize, hidden, gen));
    this.weightHh = new Parameter(init([hidden, gates * hidden], hidden, hidden, gen));
    this.biasIh = new Parameter(init([gates * hidden], inSize, hidden, gen));
    this.biasHh = new Parameter(init([gates * hidden], hidden, hidden, gen));
  }
  forward(): Tensor {
    throw new Error('a recurrent layer runs through its parent module');
  }
}

/** Shared driver of RNN, LSTM and GRU: batch-first input [B, T, in] -> output [B, T, H]. */
abstract class Recurrent extends Module {
  readonly layers: RecurrentLayer[] = [];
  readonly numLayers: number;
  protected abstract readonly hasCell: boolean;

  constructor(readonly inputSize: number, readonly hiddenSize: number, gates: number, opts: RecurrentOptions) {
    super();
    this.numLayers = opts.numLayers ?? 1;
    const gen = opts.generator ?? defaultGenerator();
    for (let l = 0; l < this.numLayers; l++) this.layers.push(new RecurrentLayer(l === 0 ? inputSize : hiddenSize, hiddenSize, gates, gen));
  }

  protected abstract cell(layer: RecurrentLayer): Cell;

  /** The output sequence [B, T, H] from a zero initial state. */
  forward(x: Tensor): Tensor {
    return this.forwardWithState(x).output;
  }

  /** The output sequence and the final state, from `state` (zeros if omitted). */
  forwardWithState(x: Tensor, state?: RecurrentState): { output: Tensor; state: RecurrentState } {
    const name = this.constructor.name;
    if (x.rank !== 3 || x.shape[2] !== this.inputSize) {
      throw new ShapeError(`${name}: input must be [batch, time, ${this.inputSize}], found ${fmtShape(x.shape)}`);
    }
    const [b, t] = x.shape as [number, number];
    if (t === 0) throw new ShapeError(`${name}: input has no time steps (shape ${fmtShape(x.shape)})`);
    const H = this.hiddenSize;
    const hs: Tensor[] = [];
    const cs: Tensor[] = [];
    let seq = x;
    this.layers.forEach((layer, l) => {
      let h = state?.h[l] ?? new Tensor(tf.zeros([b, H]));
      let c: Tensor | null = this.hasCell ? state?.c?.[l] ?? new Tensor(tf.zeros([b, H])) : null;
      for (const [what, s] of [['h', h], ['c', c]] as const) {
        if (s && fmtShape(s.shape) !== fmtShape([b, H])) {
          throw new ShapeError(`${name}: initial ${what} of layer ${l} has shape ${fmtShape(s.shape)}, expected ${fmtShape([b, H])}`);
        }
      }
      // All time steps' input projections in one matmul, then cut into steps by one node.
      const steps = unstack(linear(seq, layer.weightIh, layer.biasIh), 1);
      const cell = this.cell(layer);
      const outs: Tensor[] = [];
      for (const gx of steps) {
        [h, c] = cell(gx, h, c);
        outs.push(h);
      }
      hs.push(h);
      if (c) cs.push(c);
      seq = stack(outs, 1);
    });
    return { output: seq, state: this.hasCell ? { h: hs, c: cs } : { h: hs } };
  }
}

/** Elman RNN with tanh: h' = tanh(x Wih + bih + h Whh + bhh). */
export class RNN extends Recurrent {
  protected readonly hasCell = false;
  constructor(inputSize: number, hiddenSize: number, opts: RecurrentOptions = {}) {
    super(inputSize, hiddenSize, 1, opts);
  }
  protected cell(layer: RecurrentLayer): Cell {
    return (gx, h) => [tanh(add(gx, linear(h, layer.weightHh, layer.biasHh))), null];
  }
}

/** Long short-term memory, gates in PyTorch's order (input, forget, cell, output). */
export class LSTM extends Recurrent {
  protected readonly hasCell = true;
  constructor(inputSize: number, hiddenSize: number, opts: RecurrentOptions = {}) {
    super(inputSize, hiddenSize, 4, opts);
  }
  protected cell(layer: RecurrentLayer): Cell {
    return (gx, h, c) => {
      const z = add(gx, linear(h, layer.weightHh, layer.biasHh));
      const [zi, zf, zg, zo] = split(z, 4, 1) as [Tensor, Tensor, Tensor, Tensor];
      const c2 = add(mul(sigmoid(zf), c!), mul(sigmoid(zi), tanh(zg)));
      return [mul(sigmoid(zo), tanh(c2)), c2];
    };
  }
}

/** Gated recurrent unit, gates in PyTorch's order (reset, update, new). */
export class GRU extends Recurrent {
  protected readonly hasCell = false;
  constructor(inputSize: number, hiddenSize: number, opts: RecurrentOptions = {}) {
    super(inputSize, hiddenSize, 3, opts);
  }
  protected cell(layer: RecurrentLayer): Cell {
    return (gx, h) => {
      const gh = linear(h, layer.weightHh, layer.biasHh);
      const [xr, xz, xn] = split(gx, 3, 1) as [Tensor, Tensor, Tensor];
      const [hr, hz, hn] = split(gh, 3, 1) as [Tensor, Tensor, Tensor];
      const r = sigmoid(add(xr, hr));
      const z = sigmoid(add(xz, hz));
      const n = tanh(add(xn, mul(r, hn)));
      // h' = (1 - z) * n + z * h = n + z * (h - n)
      return [add(n, mul(z, sub(h, n))), null];
    };
  }
}

