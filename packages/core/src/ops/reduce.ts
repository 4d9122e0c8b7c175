import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { record } from '../autograd.js';
import type { Tensor } from '../tensor.js';
import { normAxis } from './util.js';

function axesOf(op: string, x: Tensor, axis?: number | number[]): number[] {
  if (axis == null) return [...Array(x.rank).keys()];
  const list = Array.isArray(axis) ? axis : [axis];
  return list.map((a) => normAxis(op, a, x.rank));
}

/** The shape a reduced gradient is reshaped to before broadcasting back over the input. */
function keptShape(shape: number[], axes: number[]): number[] {
  return shape.map((d, i) => (axes.includes(i) ? 1 : d));
}

/** Sum over `axis` (all axes by default). */
export function sum(x: Tensor, axis?: number | number[], keepDims = false): Tensor {
  const axes = axesOf('sum', x, axis);
  const shape = x.shape;
  return record('sum', [x], tf.sum(x.data, axes, keepDims), [], (dy) => [
    tf.broadcastTo(tf.reshape(dy, keptShape(shape, axes)), shape),
  ]);
}

/** Mean over `axis` (all axes by default). */
export function mean(x: Tensor, axis?: number | number[], keepDims = false): Tensor {
  const axes = axesOf('mean', x, axis);
  const shape = x.shape;
  const n = axes.reduce((p, a) => p * shape[a]!, 1);
  return record('mean', [x], tf.mean(x.data, axes, keepDims), [], (dy) => [
    tf.broadcastTo(tf.reshape(tf.div(dy, n), keptShape(shape, axes)), shape),
  ]);
}

/** Maximum over `axis` (all axes by default); the gradient is shared among tied maxima. */
export function max(x: Tensor, axis?: number | number[], keepDims = false): Tensor {
  const axes = axesOf('max', x, axis);
  const shape = x.shape;
  const y = tf.max(x.data, axes, keepDims);
  return record('max', [x], y, [x.data, y], (dy, [sx, sy]) => {
    const ks = keptShape(shape, axes);
    const mask = tf.cast(tf.equal(sx!, tf.reshape(sy!, ks)), 'float32');
    const count = tf.sum(mask, axes, true);
    return [tf.mul(tf.div(mask, count), tf.reshape(dy, ks))];
  });
}
