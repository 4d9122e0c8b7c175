import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { record } from '../autograd.js';
import { ShapeError, fmtShape } from '../errors.js';
import { defaultGenerator, drawSeed, type Generator } from '../random.js';
import type { Tensor } from '../tensor.js';
import { mm } from './matmul.js';
import { dropoutMask } from './nn.js';
import { expectRank } from './util.js';

/** Options of scaledDotProductAttention. */
export interface AttentionOptions {
  /** Each query attends only to keys at its own position or before (queries and keys equally long). */
  causal?: boolean;
  /**
   * [batch, keys]: nonzero (or true) where a key is padding and must not be attended to, as
   * PyTorch's key_padding_mask: sequences of different lengths in one batch.
   */
  keyPaddingMask?: Tensor | null;
  /** Dropout probability on the attention weights (in training only). */
  dropout?: number;
  /** Whether dropout is active (default true). */
  training?: boolean;
  /** Where dropout draws its seed (default: the global generator). */
  generator?: Generator;
  /** Factor of the scores (default 1 / sqrt(d)). */
  scale?: number;
}

/** Added to the scores of masked pairs: exp of it is 0 in float32, and a fully masked row stays finite. */
const MASKED = -1e9;

/**
 * The additive mask of the scores, [B*H or 1, Tq, Tk], or null: built in JavaScript (a key padding
 * mask's values are downloaded, B x Tk of them), because broadcasting over a middle axis is slow on
 * some backends.
 */
function maskBias(b: number, h: number, tq: number, tk: number, causal: boolean, padding: TF.Tensor | null): TF.Tensor | null {
  if (!causal && !padding) return null;
  const pad = padding ? padding.dataSync() : null;
  const rows = pad ? b * h : 1;
  const bias = new Float32Array(rows * tq * tk);
  for (let r = 0; r < rows; r++) {
    const batch = Math.floor(r / h);
    for (let i = 0; i < tq; i++) {
      const o = (r * tq + i) * tk;
      for (let j = 0; j < tk; j++) {
        if ((causal && j > i) || (pad && pad[batch * tk + j] !== 0)) bias[o + j] = MASKED;
      }
    }
  }
  return tf.tensor3d(bias, [rows, tq, tk]);
}

/**
 * Scaled dot-product attention as one operation: softmax(q k^T * scale + mask) v over inputs
 * [batch, heads, T, d] (values may have another last dimension), with optional causal masking, a key
 * padding mask per sample and dropout on the attention weights. Computed as batched products over
 * batch x heads.
 *
 * Backward keeps the inputs (references, not copies) and the attention weights [batch*heads, Tq, Tk]
 * after masking and before dropout; of dropout only its seed (the mask is drawn again). It gives
 * dq = dS k * scale, dk = dS^T q * scale, dv = P^T dO, with dS = P (dP - rowsum(dP P)).
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  for (const [name, t] of [['query', q], ['key', k], ['value', v]] as const) expectRank('scaledDotProductAttention', name, t, [4]);
  const [b, h, tq, d] = q.shape as [number, number, number, number];
  const [kb, kh, tk, kd] = k.shape as [number, number, number, number];
  const [vb, vh, vt, dv] = v.shape as [number, number, number, number];
  if (kb !== b || kh !== h || kd !== d) {
    throw new ShapeError(`scaledDotProductAttention: key of shape ${fmtShape(k.shape)} does not fit query ${fmtShape(q.shape)} (expected [${b},${h},*,${d}])`);
  }
  if (vb !== b || vh !== h || vt !== tk) {
    throw new ShapeError(`scaledDotProductAttention: value of shape ${fmtShape(v.shape)} does not fit key ${fmtShape(k.shape)} (expected [${b},${h},${tk},*])`);
  }
  const causal = opts.causal ?? false;
  if (causal && tq !== tk) throw new ShapeError(`scaledDotProductAttention: causal masking needs as many queries as keys, found ${tq} and ${tk}`);
  const padding = opts.keyPaddingMask ?? null;
  if (padding && fmtShape(padding.shape) !== fmtShape([b, tk])) {
    throw new ShapeError(`scaledDotProductAttention: key padding mask of shape ${fmtShape(padding.shape)}, expected [batch, keys] = [${b},${tk}]`);
  }
  const p = opts.dropout ?? 0;
  if (!(p >= 0 && p < 1)) throw new ShapeError(`scaledDotProductAttention: dropout probability must be in [0, 1), found ${p}`);
  const drop = p > 0 && (opts.training ?? true);
  const seed = drop ? drawSeed(opts.generator ?? defaultGenerator()) : 0;
  const scale = opts.scale ?? 1 / Math.sqrt(d);
  const bh = b * h;

  const [out, probs] = tf.tidy(() => {
    const q3 = tf.reshape(q.data, [bh, tq, d]);
    const scores = mm(tf.mul(q3, scale), tf.reshape(k.data, [bh, tk, d]), false, true);
    const bias = maskBias(b, h, tq, tk, causal, padding?.data ?? null);
    const pr = tf.softmax(bias ? tf.add(scores, bias) : scores);
    const weights = drop ? tf.mul(pr, dropoutMask([bh, tq, tk], p, seed)) : pr;
    return [tf.reshape(tf.matMul(weights, tf.reshape(v.data, [bh, tk, dv])), [b, h, tq, dv]), pr];
  });
  return record('scaledDotProductAttention', [q, k, v], out, [q.data, k.data, v.data, probs], (dy, [sq, sk, sv, pr], needs) => {
    const dO = tf.reshape(dy, [bh, tq, dv]);
    const k3 = tf.reshape(sk!, [bh, tk, d]);
    const mask = drop ? dropoutMask([bh, tq, tk], p, seed) : null;
    const weights = mask ? tf.mul(pr!, mask) : pr!;
    const dv3 = needs[2] ? mm(weights, dO, true, false) : null;
    let dS: TF.Tensor | null = null;
    if (needs[0] || needs[1]) {
      const dWeights = mm(dO, tf.reshape(sv!, [bh, tk, dv]), false, true);
      const dP = mask ? tf.mul(dWeights, mask) : dWeights;
      dS = tf.mul(pr!, tf.sub(dP, tf.sum(tf.mul(dP, pr!), -1, true)));
    }
    return [
      needs[0] ? tf.reshape(tf.mul(mm(dS!, k3), scale), [b, h, tq, d]) : null,
      needs[1] ? tf.reshape(mm(dS!, tf.mul(tf.reshape(sq!, [bh, tq, d]), scale), true, false), [b, h, tk, d]) : null,
      dv3 ? tf.reshape(dv3, [b, h, tk, dv]) : null,
    ];
  });
}
