import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { record } from '../autograd.js';
import { Tensor } from '../tensor.js';
import { asTensor, broadcastShape, unbroadcast, type Operand } from './util.js';

function binary(
  name: string,
  a: Operand,
  b: Operand,
  forward: (x: TF.Tensor, y: TF.Tensor) => TF.Tensor,
  grads: (dy: TF.Tensor, x: TF.Tensor, y: TF.Tensor, needs: boolean[]) => [TF.Tensor | null, TF.Tensor | null],
  saves: boolean,
): Tensor {
  const ta = asTensor(a);
  const tb = asTensor(b);
  broadcastShape(name, ta.shape, tb.shape);
  const out = forward(ta.data, tb.data);
  const sa = ta.shape;
  const sb = tb.shape;
  const result = record(name, [ta, tb], out, saves ? [ta.data, tb.data] : [], (dy, saved, needs) => {
    const [ga, gb] = grads(dy, saved[0]!, saved[1]!, needs);
    return [ga && unbroadcast(ga, sa), gb && unbroadcast(gb, sb)];
  });
  if (!(a instanceof Tensor)) ta.dispose();
  if (!(b instanceof Tensor)) tb.dispose();
  return result;
}

/** Elementwise a + b, with broadcasting. */
export function add(a: Operand, b: Operand): Tensor {
  return binary('add', a, b, tf.add, (dy) => [dy, dy], false);
}

/** Elementwise a - b, with broadcasting. */
export function sub(a: Operand, b: Operand): Tensor {
  return binary('sub', a, b, tf.sub, (dy, _x, _y, n) => [dy, n[1] ? tf.neg(dy) : null], false);
}

/** Elementwise a * b, with broadcasting. */
export function mul(a: Operand, b: Operand): Tensor {
  return binary('mul', a, b, tf.mul, (dy, x, y, n) => [n[0] ? tf.mul(dy, y) : null, n[1] ? tf.mul(dy, x) : null], true);
}

/** Elementwise a / b, with broadcasting. */
export function div(a: Operand, b: Operand): Tensor {
  return binary(
    'div',
    a,
    b,
    tf.div,
    (dy, x, y, n) => [n[0] ? tf.div(dy, y) : null, n[1] ? tf.neg(tf.div(tf.mul(dy, x), tf.square(y))) : null],
    true,
  );
}

/** Elementwise maximum, with broadcasting (the gradient goes to the larger; to a on ties). */
export function maximum(a: Operand, b: Operand): Tensor {
  return binary(
    'maximum',
    a,
    b,
    tf.maximum,
    (dy, x, y, n) => {
      const m = tf.cast(tf.greaterEqual(x, y), 'float32');
      return [n[0] ? tf.mul(dy, m) : null, n[1] ? tf.mul(dy, tf.sub(1, m)) : null];
    },
    true,
  );
}

/** Elementwise minimum, with broadcasting (the gradient goes to the smaller; to a on ties). */
export function minimum(a: Operand, b: Operand): Tensor {
  return binary(
    'minimum',
    a,
    b,
    tf.minimum,
    (dy, x, y, n) => {
      const m = tf.cast(tf.lessEqual(x, y), 'float32');
      return [n[0] ? tf.mul(dy, m) : null, n[1] ? tf.mul(dy, tf.sub(1, m)) : null];
    },
    true,
  );
}
