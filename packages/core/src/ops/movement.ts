import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { record, recordMulti } from '../autograd.js';
import { kernelTraits } from '../backend.js';
import { permute } from './permute.js';
import { ShapeError, fmtShape } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { normAxis, oneHotF32 } from './util.js';

/** The same values in a new shape (one dimension may be -1). */
export function reshape(x: Tensor, shape: number[]): Tensor {
  const size = x.size;
  const known = shape.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
  const unknown = shape.filter((d) => d === -1).length;
  if (unknown > 1 || (unknown === 0 && known !== size) || (unknown === 1 && (known === 0 || size % known !== 0))) {
    throw new ShapeError(`reshape: cannot reshape ${fmtShape(x.shape)} (${size} elements) to ${fmtShape(shape)}`);
  }
  const inShape = x.shape;
  return record('reshape', [x], tf.reshape(x.data, shape), [], (dy) => [tf.reshape(dy, inShape)]);
}

/** Flattens all dimensions from `startDim` on into one. */
export function flatten(x: Tensor, startDim = 1): Tensor {
  const s = x.shape;
  const d = normAxis('flatten', startDim, s.length);
  return reshape(x, [...s.slice(0, d), s.slice(d).reduce((a, b) => a * b, 1)]);
}

/** Permutes dimensions (reverses them by default). */
export function transpose(x: Tensor, perm?: number[]): Tensor {
  const p = perm ?? [...Array(x.rank).keys()].reverse();
  if (p.length !== x.rank || [...p].sort((a, b) => a - b).some((v, i) => v !== i)) {
    throw new ShapeError(`transpose: permutation [${p}] does not fit a tensor of shape ${fmtShape(x.shape)}`);
  }
  const inv = new Array<number>(p.length);
  p.forEach((v, i) => (inv[v] = i));
  return record('transpose', [x], permute(x.data, p), [], (dy) => [permute(dy, inv)]);
}

/** A contiguous slice: `begin` per dimension and `size` per dimension (-1 = to the end). */
export function slice(x: Tensor, begin: number[], size: number[]): Tensor {
  const shape = x.shape;
  if (begin.length !== shape.length || size.length !== shape.length) {
    throw new ShapeError(`slice: begin [${begin}] and size [${size}] must both have one entry per dimension of ${fmtShape(shape)}`);
  }
  const sz = size.map((s, i) => (s === -1 ? shape[i]! - begin[i]! : s));
  sz.forEach((s, i) => {
    if (begin[i]! < 0 || s < 0 || begin[i]! + s > shape[i]!) {
      throw new ShapeError(`slice: begin [${begin}] size [${size}] is out of bounds of ${fmtShape(shape)} in dimension ${i}`);
    }
  });
  return record('slice', [x], tf.slice(x.data, begin, sz), [], (dy) => [
    tf.pad(dy, shape.map((d, i) => [begin[i]!, d - begin[i]! - sz[i]!] as [number, number])),
  ]);
}

/** Joins tensors along an axis. */
export function concat(xs: Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new ShapeError('concat: needs at least one tensor');
  const rank = xs[0]!.rank;
  const a = normAxis('concat', axis, rank);
  xs.forEach((t, k) => {
    if (t.rank !== rank || t.shape.some((d, i) => i !== a && d !== xs[0]!.shape[i])) {
      throw new ShapeError(`concat: tensor ${k} has shape ${fmtShape(t.shape)}, incompatible with ${fmtShape(xs[0]!.shape)} along axis ${a}`);
    }
  });
  const sizes = xs.map((t) => t.shape[a]!);
  return record('concat', xs, tf.concat(xs.map((t) => t.data), a), [], (dy, _s, needs) => {
    const parts = tf.split(dy, sizes, a);
    return parts.map((p, i) => (needs[i] ? p : null));
  });
}

/** Stacks tensors of one shape along a new axis. */
export function stack(xs: Tensor[], axis = 0): Tensor {
  if (xs.length === 0) throw new ShapeError('stack: needs at least one tensor');
  const a = normAxis('stack', axis, xs[0]!.rank + 1);
  xs.forEach((t, k) => {
    if (fmtShape(t.shape) !== fmtShape(xs[0]!.shape)) {
      throw new ShapeError(`stack: tensor ${k} has shape ${fmtShape(t.shape)}, expected ${fmtShape(xs[0]!.shape)}`);
    }
  });
  return record('stack', xs, tf.stack(xs.map((t) => t.data), a), [], (dy, _s, needs) =>
    tf.unstack(dy, a).map((p, i) => (needs[i] ? p : null)),
  );
}

/** Splits into pieces along an axis: a number of equal pieces, or a list of sizes. One node, whatever the count. */
export function split(x: Tensor, sizes: number | number[], axis = 0): Tensor[] {
  const a = normAxis('split', axis, x.rank);
  const n = x.shape[a]!;
  const list = typeof sizes === 'number' ? Array<number>(sizes).fill(n / sizes) : sizes;
  if (list.some((s) => !Number.isInteger(s) || s < 0) || list.reduce((p, q) => p + q, 0) !== n) {
    throw new ShapeError(`split: sizes [${list}] do not add up to dimension ${a} of ${fmtShape(x.shape)}`);
  }
  return recordMulti('split', [x], tf.split(x.data, list, a), [], (dys) => [tf.concat(dys, a)]);
}

/** Removes an axis, returning the slices along it (one node, so RNN time steps cost O(T)). */
export function unstack(x: Tensor, axis = 0): Tensor[] {
  const a = normAxis('unstack', axis, x.rank);
  return recordMulti('unstack', [x], tf.unstack(x.data, a), [], (dys) => [tf.stack(dys, a)]);
}

/** Pads with a constant; `paddings` holds [before, after] per dimension. */
export function pad(x: Tensor, paddings: [number, number][], value = 0): Tensor {
  const shape = x.shape;
  if (paddings.length !== shape.length) {
    throw new ShapeError(`pad: ${paddings.length} paddings for a tensor of shape ${fmtShape(shape)}`);
  }
  return record('pad', [x], tf.pad(x.data, paddings, value), [], (dy) => [
    tf.slice(dy, paddings.map((p) => p[0]), shape),
  ]);
}

/**
 * Rows of `x` picked by integer `indices` along axis 0 (embedding lookup). The gradient is a
 * scatter-add: unsortedSegmentSum where the backend has it, else a one-hot matmul (the wasm backend
 * has no UnsortedSegmentSum kernel).
 */
export function gather(x: Tensor, indices: Tensor): Tensor {
  if (indices.dtype !== 'int32') throw new ShapeError(`gather: indices must be int32, found ${indices.dtype}`);
  const shape = x.shape;
  const rows = shape[0]!;
  const y = tf.gather(x.data, indices.data, 0);
  return record('gather', [x, indices], y, [indices.data], (dy, [idx]) => {
    const flatIdx = tf.reshape(idx!, [-1]);
    const width = shape.slice(1).reduce((a, b) => a * b, 1);
    const dy2 = tf.reshape(dy, [flatIdx.size, width]);
    let g: TF.Tensor;
    if (!kernelTraits().segmentSum) {
      const oh = oneHotF32(flatIdx as TF.Tensor1D, rows); // [n, rows]
      g = tf.matMul(tf.transpose(oh), dy2);
    } else {
      g = tf.unsortedSegmentSum(dy2, flatIdx as TF.Tensor1D, rows);
    }
    return [tf.reshape(g, shape), null];
  });
}

/** Removes dimensions of size 1 (all of them, or those listed). */
export function squeeze(x: Tensor, axis?: number[]): Tensor {
  const s = x.shape;
  const drop = axis?.map((a) => normAxis('squeeze', a, s.length));
  drop?.forEach((a) => {
    if (s[a] !== 1) throw new ShapeError(`squeeze: dimension ${a} of ${fmtShape(s)} is not 1`);
  });
  return reshape(x, s.filter((d, i) => (drop ? !drop.includes(i) : d !== 1)));
}

/** Inserts a dimension of size 1 at `axis`. */
export function unsqueeze(x: Tensor, axis: number): Tensor {
  const s = x.shape;
  const a = normAxis('unsqueeze', axis, s.length + 1);
  return reshape(x, [...s.slice(0, a), 1, ...s.slice(a)]);
}
