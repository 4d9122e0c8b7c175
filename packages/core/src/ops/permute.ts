import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { kernelTraits } from '../backend.js';

/**
 * Reorders the dimensions of `src` (a row-major array of `shape`) by `perm`, as tf.transpose does,
 * into a new array. Runs of elements contiguous in both layouts (the trailing dimensions `perm`
 * keeps in place) are copied whole.
 */
export function permuteArray<A extends Float32Array | Int32Array | Uint8Array>(src: A, shape: readonly number[], perm: readonly number[]): A {
  const rank = shape.length;
  // The trailing dimensions that stay in place form contiguous runs.
  let keep = rank;
  while (keep > 0 && perm[keep - 1] === keep - 1) keep--;
  const run = shape.slice(keep).reduce((a, b) => a * b, 1);
  const outShape = perm.map((p) => shape[p]!);
  const srcStride = new Array<number>(rank).fill(1);
  for (let i = rank - 2; i >= 0; i--) srcStride[i] = srcStride[i + 1]! * shape[i + 1]!;
  // Loop over the output's leading `keep` dimensions, in output order.
  const dims = outShape.slice(0, keep);
  const strides = perm.slice(0, keep).map((p) => srcStride[p]!);
  const out = new (src.constructor as new (n: number) => A)(src.length);
  if (src.length === 0) return out;
  const idx = new Array<number>(keep).fill(0);
  let from = 0;
  for (let o = 0; o < out.length; o += run) {
    if (run === 1) out[o] = src[from]!;
    else out.set(src.subarray(from, from + run), o);
    // Advance the output index, carrying, and keep the source offset in step.
    for (let d = keep - 1; d >= 0; d--) {
      if (++idx[d]! < dims[d]!) {
        from += strides[d]!;
        break;
      }
      from -= strides[d]! * (dims[d]! - 1);
      idx[d] = 0;
    }
  }
  return out;
}

/**
 * tf.transpose in the form fastest on the active backend. The wasm backend's transpose of rank 3 and
 * more walks memory in a slow generic loop, an order of magnitude slower than permuting the
 * downloaded values in JavaScript (a transformer's head split, docs/benchmarks.md); there the values
 * are permuted in JavaScript.
 */
export function permute(x: TF.Tensor, perm: number[]): TF.Tensor {
  if (perm.every((p, i) => p === i)) return tf.clone(x);
  if (kernelTraits().fastTranspose || x.rank < 3 || x.dtype === 'string' || x.dtype === 'complex64') return tf.transpose(x, perm);
  const values = x.dataSync() as Float32Array | Int32Array | Uint8Array;
  return tf.tensor(permuteArray(values, x.shape, perm), perm.map((p) => x.shape[p]!), x.dtype);
}
