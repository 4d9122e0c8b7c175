import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { ShapeError, fmtShape } from '../errors.js';
import { Tensor } from '../tensor.js';

/** A Tensor, or a number used as a constant scalar. */
export type Operand = Tensor | number;

/** Wraps a number as a constant scalar Tensor. */
export function asTensor(x: Operand): Tensor {
  return x instanceof Tensor ? x : new Tensor(tf.scalar(x));
}

/** The broadcast shape of two shapes (NumPy rules), or a ShapeError naming the operation. */
export function broadcastShape(op: string, a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out: number[] = new Array(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) {
      throw new ShapeError(`${op}: shapes ${fmtShape(a)} and ${fmtShape(b)} cannot be broadcast together (dimension ${i}: ${da} vs ${db})`);
    }
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/** Sums a broadcast gradient back down to `shape` (undoing broadcasting). */
export function unbroadcast(g: TF.Tensor, shape: readonly number[]): TF.Tensor {
  if (g.shape.length === shape.length && g.shape.every((d, i) => d === shape[i])) return g;
  const lead = g.rank - shape.length;
  const axes: number[] = [];
  for (let i = 0; i < g.rank; i++) {
    if (i < lead || (shape[i - lead] === 1 && g.shape[i] !== 1)) axes.push(i);
  }
  const s = axes.length ? tf.sum(g, axes) : g;
  return reshapeTo(s, shape);
}

/** `t` in `shape`: itself where it has that shape already (a reshape is a kernel call on some backends). */
export function reshapeTo(t: TF.Tensor, shape: readonly number[]): TF.Tensor {
  return t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]) ? t : tf.reshape(t, shape as number[]);
}

/** Normalises a possibly negative axis against a rank, or throws naming the operation. */
export function normAxis(op: string, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new ShapeError(`${op}: axis ${axis} is out of range for a tensor of rank ${rank}`);
  return a;
}

/** Asserts a tensor's rank, naming the operation and the shape found. */
export function expectRank(op: string, what: string, t: Tensor, ranks: number[]): void {
  if (!ranks.includes(t.rank)) {
    throw new ShapeError(`${op}: ${what} must have rank ${ranks.join(' or ')}, found shape ${fmtShape(t.shape)}`);
  }
}

/**
 * One-hot rows as float32. Built as int32 and cast: the wasm backend's OneHot kernel writes integer
 * bit patterns when asked for float32 output (tfjs-backend-wasm 4.22).
 */
export function oneHotF32(indices: TF.Tensor1D, depth: number): TF.Tensor {
  return tf.tidy(() => tf.cast(tf.oneHot(indices, depth), 'float32'));
}
