import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import type { Tensor } from '../tensor.js';

/**
 * Scales all gradients together so that their global L2 norm is at most `maxNorm`, as PyTorch's
 * clip_grad_norm_. Returns the norm before clipping.
 */
export function clipGradNorm(params: Tensor[], maxNorm: number): number {
  const withGrad = params.filter((p) => p.grad != null);
  if (withGrad.length === 0) return 0;
  const total = tf.tidy(() => tf.sqrt(tf.addN(withGrad.map((p) => tf.sum(tf.square(p.grad!.data))))));
  const norm = total.dataSync()[0]!;
  total.dispose();
  const coef = maxNorm / (norm + 1e-6);
  if (coef < 1) {
    for (const p of withGrad) {
      const old = p.grad!.data;
      p.grad!.data = tf.keep(tf.mul(old, coef));
      old.dispose();
    }
  }
  return norm;
}
