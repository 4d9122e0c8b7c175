import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { record } from '../autograd.js';
import { ShapeError, fmtShape } from '../errors.js';
import { defaultGenerator, drawSeed, type Generator } from '../random.js';
import { Tensor } from '../tensor.js';
import { kernelTraits } from '../backend.js';
import { tensorflowOp } from './native.js';
import { normAxis, oneHotF32, reshapeTo } from './util.js';

function lastAxisOnly(op: string, x: Tensor, axis: number): void {
  if (normAxis(op, axis, x.rank) !== x.rank - 1) {
    throw new ShapeError(`${op}: only the last axis is supported (found axis ${axis} of a tensor of rank ${x.rank}); transpose first`);
  }
}

/** Softmax over the last axis. */
export function softmax(x: Tensor, axis = -1): Tensor {
  lastAxisOnly('softmax', x, axis);
  const y = tf.softmax(x.data);
  return record('softmax', [x], y, [y], (dy, [sy]) => {
    const s = tf.sum(tf.mul(dy, sy!), -1, true);
    return [tf.mul(sy!, tf.sub(dy, s))];
  });
}

/** Log-softmax over the last axis, computed stably (x - max - log sum exp). */
export function logSoftmax(x: Tensor, axis = -1): Tensor {
  lastAxisOnly('logSoftmax', x, axis);
  const y = tf.tidy(() => {
    const shifted = tf.sub(x.data, tf.max(x.data, -1, true));
    return tf.sub(shifted, tf.log(tf.sum(tf.exp(shifted), -1, true)));
  });
  return record('logSoftmax', [x], y, [y], (dy, [sy]) => [tf.sub(dy, tf.mul(tf.exp(sy!), tf.sum(dy, -1, true)))]);
}

/** How a per-example loss is reduced. */
export type Reduction = 'mean' | 'sum' | 'none';

/**
 * Cross-entropy of logits [..., C] against integer class targets [...], fused with log-softmax:
 * the gradient is (softmax - onehot), with no division by probabilities. It keeps that difference
 * (or softmax and the one-hot rows) for backward. On tensorflow, one native op computes the per-example
 * losses and the difference together.
 */
export function crossEntropy(logits: Tensor, targets: Tensor, reduction: Reduction = 'mean'): Tensor {
  const ls = logits.shape;
  const classes = ls[ls.length - 1]!;
  if (targets.dtype !== 'int32') throw new ShapeError(`crossEntropy: targets must be int32 class indices, found ${targets.dtype}`);
  if (fmtShape(targets.shape) !== fmtShape(ls.slice(0, -1))) {
    throw new ShapeError(`crossEntropy: logits of shape ${fmtShape(ls)} need targets of shape ${fmtShape(ls.slice(0, -1))}, found ${fmtShape(targets.shape)}`);
  }
  const n = targets.size;
  const reduce = (per: TF.Tensor) => (reduction === 'mean' ? tf.mean(per) : reduction === 'sum' ? tf.sum(per) : reshapeTo(per, ls.slice(0, -1)));
  const [loss, diff] = tf.tidy(() => {
    const x = reshapeTo(logits.data, [n, classes]);
    const t = reshapeTo(targets.data, [n]) as TF.Tensor1D;
    if (kernelTraits().tensorflowOps) {
      const [per, d] = tensorflowOp('SparseSoftmaxCrossEntropyWithLogits', [x, t], { Tlabels: { dtype: 'int32' } }, 2);
      return [reduce(per!), d!];
    }
    const shifted = tf.sub(x, tf.max(x, -1, true));
    const logp = tf.sub(shifted, tf.log(tf.sum(tf.exp(shifted), -1, true)));
    const oh = oneHotF32(t, classes);
    return [reduce(tf.neg(tf.sum(tf.mul(logp, oh), -1))), tf.sub(tf.exp(logp), oh)];
  });
  return record('crossEntropy', [logits, targets], loss, [diff], (dy, [d]) => {
    const scaleBy = reduction === 'mean' ? tf.div(dy, n) : reduction === 'sum' ? dy : tf.reshape(dy, [n, 1]);
    return [reshapeTo(tf.mul(d!, scaleBy), ls), null];
  });
}

/** Mean squared error between a prediction and a target of the same shape. */
export function mseLoss(pred: Tensor, target: Tensor, reduction: Reduction = 'mean'): Tensor {
  if (fmtShape(pred.shape) !== fmtShape(target.shape)) {
    throw new ShapeError(`mseLoss: prediction ${fmtShape(pred.shape)} and target ${fmtShape(target.shape)} differ in shape`);
  }
  const n = pred.size;
  const diff = tf.sub(pred.data, target.data);
  const sq = tf.square(diff);
  const loss = reduction === 'mean' ? tf.mean(sq) : reduction === 'sum' ? tf.sum(sq) : sq;
  if (loss !== sq) sq.dispose();
  return record('mseLoss', [pred, target], loss, [diff], (dy, [d], needs) => {
    const g = tf.mul(d!, reduction === 'mean' ? tf.div(dy, n / 2) : tf.mul(dy, 2));
    return [needs[0] ? g : null, needs[1] ? tf.neg(g) : null];
  });
}

/** The mask of inverted dropout: 0 with probability p, else 1/(1-p); the same for the same seed. */
export function dropoutMask(shape: number[], p: number, seed: number): TF.Tensor {
  return tf.tidy(() => tf.div(tf.step(tf.sub(tf.randomUniform(shape, 0, 1, 'float32', seed), p)), 1 - p));
}

/**
 * Inverted dropout: zeroes each element with probability p during training and scales the rest
 * by 1/(1-p). The mask comes from a seeded generator, so runs repeat exactly.
 */
export function dropout(x: Tensor, p: number, training = true, gen: Generator = defaultGenerator()): Tensor {
  if (p < 0 || p >= 1) throw new ShapeError(`dropout: probability must be in [0, 1), found ${p}`);
  if (!training || p === 0) return x;
  const mask = dropoutMask(x.shape, p, drawSeed(gen));
  const y = tf.mul(x.data, mask);
  return record('dropout', [x], y, [mask], (dy, [m]) => [tf.mul(dy, m!)]);
}

/**
 * Layer normalisation over the last dimension, with optional elementwise affine weight and bias.
 * One node with a closed-form gradient rather than ten composed ones.
 */
export function layerNorm(x: Tensor, weight?: Tensor | null, bias?: Tensor | null, eps = 1e-5): Tensor {
  const s = x.shape;
  const d = s[s.length - 1]!;
  for (const [name, t] of [['weight', weight], ['bias', bias]] as const) {
    if (t && (t.rank !== 1 || t.shape[0] !== d)) throw new ShapeError(`layerNorm: ${name} of shape ${fmtShape(t.shape)}, expected [${d}]`);
  }
  const [y, xhat, rstd] = tf.tidy(() => {
    const mu = tf.mean(x.data, -1, true);
    const xc = tf.sub(x.data, mu);
    const r = tf.rsqrt(tf.add(tf.mean(tf.square(xc), -1, true), eps));
    const xh = tf.mul(xc, r);
    let out = weight ? tf.mul(xh, weight.data) : xh;
    if (bias) out = tf.add(out, bias.data);
    return [out === xh ? tf.clone(xh) : out, xh, r];
  });
  const inputs = [x, weight, bias].filter((t): t is Tensor => t != null);
  const saved = weight ? [xhat, rstd, weight.data] : [xhat, rstd];
  return record('layerNorm', inputs, y, saved, (dy, [xh, r, g], needs) => {
    const lead = [...Array(s.length - 1).keys()];
    const dxh = g ? tf.mul(dy, g) : dy;
    const out: (TF.Tensor | null)[] = [];
    if (needs[0]) {
      const m1 = tf.mean(dxh, -1, true);
      const m2 = tf.mean(tf.mul(dxh, xh!), -1, true);
      out.push(tf.mul(r!, tf.sub(tf.sub(dxh, m1), tf.mul(xh!, m2))));
    } else out.push(null);
    if (weight) out.push(needs[1] ? tf.sum(tf.mul(dy, xh!), lead) : null);
    if (bias) out.push(needs[inputs.length - 1] ? tf.sum(dy, lead) : null);
    return out;
  });
}

/** Running statistics of batch normalisation, updated in place during training. */
export interface BatchNormStats {
  runningMean: TF.Tensor;
  runningVar: TF.Tensor;
}

/**
 * Batch normalisation over every axis but the last (channels last: [N, C] or NHWC). In training it
 * normalises by the batch's statistics and updates `stats` (momentum as in PyTorch, unbiased running
 * variance); in evaluation it uses the running statistics.
 */
export function batchNorm(
  x: Tensor,
  stats: BatchNormStats,
  weight: Tensor | null,
  bias: Tensor | null,
  training: boolean,
  momentum = 0.1,
  eps = 1e-5,
): Tensor {
  const s = x.shape;
  const c = s[s.length - 1]!;
  if (stats.runningMean.size !== c) {
    throw new ShapeError(`batchNorm: input ${fmtShape(s)} has ${c} channels (last axis), running statistics have ${stats.runningMean.size}`);
  }
  const axes = [...Array(s.length - 1).keys()];
  const count = s.slice(0, -1).reduce((a, b) => a * b, 1);
  const [y, xhat, rstd] = tf.tidy(() => {
    let mu: TF.Tensor, v: TF.Tensor;
    if (training) {
      mu = tf.mean(x.data, axes);
      v = tf.mean(tf.square(tf.sub(x.data, mu)), axes);
      const unbiased = count > 1 ? tf.mul(v, count / (count - 1)) : v;
      const rm = stats.runningMean, rv = stats.runningVar;
      stats.runningMean = tf.keep(tf.add(tf.mul(rm, 1 - momentum), tf.mul(mu, momentum)));
      stats.runningVar = tf.keep(tf.add(tf.mul(rv, 1 - momentum), tf.mul(unbiased, momentum)));
      rm.dispose();
      rv.dispose();
    } else {
      mu = stats.runningMean;
      v = stats.runningVar;
    }
    const r = tf.rsqrt(tf.add(v, eps));
    const xh = tf.mul(tf.sub(x.data, mu), r);
    let out = weight ? tf.mul(xh, weight.data) : xh;
    if (bias) out = tf.add(out, bias.data);
    return [out === xh ? tf.clone(xh) : out, xh, r];
  });
  const inputs = [x, weight, bias].filter((t): t is Tensor => t != null);
  const saved = weight ? [xhat, rstd, weight.data] : [xhat, rstd];
  return record('batchNorm', inputs, y, saved, (dy, [xh, r, g], needs) => {
    const dxh = g ? tf.mul(dy, g) : dy;
    const out: (TF.Tensor | null)[] = [];
    if (needs[0]) {
      if (training) {
        const m1 = tf.mean(dxh, axes);
        const m2 = tf.mean(tf.mul(dxh, xh!), axes);
        out.push(tf.mul(r!, tf.sub(tf.sub(dxh, m1), tf.mul(xh!, m2))));
      } else out.push(tf.mul(dxh, r!));
    } else out.push(null);
    if (weight) out.push(needs[1] ? tf.sum(tf.mul(dy, xh!), axes) : null);
    if (bias) out.push(needs[inputs.length - 1] ? tf.sum(dy, axes) : null);
    return out;
  });
}
