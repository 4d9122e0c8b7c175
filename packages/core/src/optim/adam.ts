import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import type { Parameter } from '../nn/module.js';
import { Optimizer } from './optimizer.js';

/** Options of Adam and AdamW. */
export interface AdamOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

/** Adam; weight decay, if any, is added to the gradient (L2), as PyTorch's Adam does. */
export class Adam extends Optimizer {
  readonly betas: [number, number];
  readonly eps: number;
  readonly weightDecay: number;
  protected readonly decoupled: boolean = false;
  constructor(params: Parameter[], opts: AdamOptions = {}) {
    super(params, opts.lr ?? 1e-3);
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
    this.weightDecay = opts.weightDecay ?? 0;
  }
  protected update(p0: TF.Tensor, grad: TF.Tensor, slots: Map<string, TF.Tensor>, step: number): TF.Tensor {
    const [b1, b2] = this.betas;
    let p = p0;
    let g = grad;
    if (this.weightDecay) {
      if (this.decoupled) p = tf.mul(p, 1 - this.lr * this.weightDecay);
      else g = tf.add(g, tf.mul(p, this.weightDecay));
    }
    const m0 = slots.get('expAvg');
    const v0 = slots.get('expAvgSq');
    const m = m0 ? tf.add(tf.mul(m0, b1), tf.mul(g, 1 - b1)) : tf.mul(g, 1 - b1);
    const v = v0 ? tf.add(tf.mul(v0, b2), tf.mul(tf.square(g), 1 - b2)) : tf.mul(tf.square(g), 1 - b2);
    slots.set('expAvg', m);
    slots.set('expAvgSq', v);
    const stepSize = this.lr / (1 - b1 ** step);
    const denom = tf.add(tf.div(tf.sqrt(v), Math.sqrt(1 - b2 ** step)), this.eps);
    return tf.sub(p, tf.mul(tf.div(m, denom), stepSize));
  }
  protected settings(): Record<string, unknown> {
    return { betas: this.betas, eps: this.eps, weightDecay: this.weightDecay };
  }
}

/** AdamW: Adam with decoupled weight decay (default 0.01), applied to the weights directly. */
export class AdamW extends Adam {
  protected override readonly decoupled = true;
  constructor(params: Parameter[], opts: AdamOptions = {}) {
    super(params, { weightDecay: 0.01, ...opts });
  }
}
