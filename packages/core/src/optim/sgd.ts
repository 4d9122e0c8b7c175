import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import type { Parameter } from '../nn/module.js';
import { Optimizer } from './optimizer.js';

/** Options of SGD (PyTorch's semantics). */
export interface SGDOptions {
  lr: number;
  momentum?: number;
  dampening?: number;
  nesterov?: boolean;
  weightDecay?: number;
}

/** Stochastic gradient descent with optional momentum, Nesterov momentum and L2 weight decay. */
export class SGD extends Optimizer {
  readonly momentum: number;
  readonly dampening: number;
  readonly nesterov: boolean;
  readonly weightDecay: number;
  constructor(params: Parameter[], opts: SGDOptions) {
    super(params, opts.lr);
    this.momentum = opts.momentum ?? 0;
    this.dampening = opts.dampening ?? 0;
    this.nesterov = opts.nesterov ?? false;
    this.weightDecay = opts.weightDecay ?? 0;
    if (this.nesterov && (this.momentum <= 0 || this.dampening !== 0)) {
      throw new Error('Nesterov momentum needs momentum > 0 and dampening 0');
    }
  }
  protected update(p: TF.Tensor, grad: TF.Tensor, slots: Map<string, TF.Tensor>): TF.Tensor {
    let g = this.weightDecay ? tf.add(grad, tf.mul(p, this.weightDecay)) : grad;
    if (this.momentum) {
      const prev = slots.get('momentum');
      const buf = prev ? tf.add(tf.mul(prev, this.momentum), tf.mul(g, 1 - this.dampening)) : tf.clone(g);
      slots.set('momentum', buf);
      g = this.nesterov ? tf.add(g, tf.mul(buf, this.momentum)) : buf;
    }
    return tf.sub(p, tf.mul(g, this.lr));
  }
  protected settings(): Record<string, unknown> {
    return { momentum: this.momentum, dampening: this.dampening, nesterov: this.nesterov, weightDecay: this.weightDecay };
  }
}
