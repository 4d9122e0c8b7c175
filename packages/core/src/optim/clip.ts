import { tf } from '../tf.js';
import type { Tensor } from '../tensor.js';

/** The sum of the squares of every gradient of `params` (those without one count 0). */
export function sumOfSquaredGrads(params: Tensor[]): number {
  const withGrad = params.filter((p) => p.grad != null);
  if (withGrad.length === 0) return 0;
  const total = tf.tidy(() => tf.addN(withGrad.map((p) => tf.sum(tf.square(p.grad!.data)))));
  const v = total.dataSync()[0]!;
  total.dispose();
  return v;
}

/** Multiplies every gradient of `params` by `factor`, in place of the old one. */
export function scaleGrads(params: Tensor[], factor: number): void {
  for (const p of params) {
    if (!p.grad) continue;
    const old = p.grad.data;
    p.grad.data = tf.keep(tf.mul(old, factor));
    old.dispose();
  }
}

/**
 * Scales all gradients together so that their global L2 norm is at most `maxNorm`, as PyTorch's
 * clip_grad_norm_. Returns the norm before clipping. (A model split across processes sums
 * `sumOfSquaredGrads` over them first, as the pipeline's `clipGradNorm` option does.)
 */
export function clipGradNorm(params: Tensor[], maxNorm: number): number {
  const norm = Math.sqrt(sumOfSquaredGrads(params));
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) scaleGrads(params, coef);
  return norm;
}
