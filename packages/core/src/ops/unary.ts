import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { record } from '../autograd.js';
import { kernelTraits } from '../backend.js';
import type { Tensor } from '../tensor.js';
import { tensorflowOp1 } from './native.js';

// Each rule saves either the input (x) or the output (y), whichever its derivative is cheapest from.
function unaryX(name: string, x: Tensor, f: (x: TF.Tensor) => TF.Tensor, g: (dy: TF.Tensor, x: TF.Tensor) => TF.Tensor): Tensor {
  return record(name, [x], f(x.data), [x.data], (dy, [sx]) => [g(dy, sx!)]);
}
function unaryY(name: string, x: Tensor, f: (x: TF.Tensor) => TF.Tensor, g: (dy: TF.Tensor, y: TF.Tensor) => TF.Tensor): Tensor {
  const y = f(x.data);
  return record(name, [x], y, [y], (dy, [sy]) => [g(dy, sy!)]);
}

/** -x */
export function neg(x: Tensor): Tensor {
  return record('neg', [x], tf.neg(x.data), [], (dy) => [tf.neg(dy)]);
}
/** e^x */
export function exp(x: Tensor): Tensor {
  return unaryY('exp', x, tf.exp, (dy, y) => tf.mul(dy, y));
}
/** Natural logarithm. */
export function log(x: Tensor): Tensor {
  return unaryX('log', x, tf.log, (dy, x) => tf.div(dy, x));
}
/** Square root. */
export function sqrt(x: Tensor): Tensor {
  return unaryY('sqrt', x, tf.sqrt, (dy, y) => tf.div(dy, tf.mul(y, 2)));
}
/** 1 / sqrt(x). */
export function rsqrt(x: Tensor): Tensor {
  // d/dx x^-1/2 = -1/2 x^-3/2 = -1/2 y^3
  return unaryY('rsqrt', x, tf.rsqrt, (dy, y) => tf.mul(dy, tf.mul(tf.mul(y, tf.square(y)), -0.5)));
}
/** x^2 */
export function square(x: Tensor): Tensor {
  return unaryX('square', x, tf.square, (dy, x) => tf.mul(dy, tf.mul(x, 2)));
}
/** |x| (gradient 0 at 0). */
export function abs(x: Tensor): Tensor {
  return unaryX('abs', x, tf.abs, (dy, x) => tf.mul(dy, tf.sign(x)));
}
/** x^p for a constant exponent p. */
export function pow(x: Tensor, p: number): Tensor {
  return unaryX('pow', x, (t) => tf.pow(t, p), (dy, x) => tf.mul(dy, tf.mul(tf.pow(x, p - 1), p)));
}
/** x * c for a constant c. */
export function scale(x: Tensor, c: number): Tensor {
  return record('scale', [x], tf.mul(x.data, c), [], (dy) => [tf.mul(dy, c)]);
}
/**
 * max(x, 0). Gradient from the output: TensorFlow's own ReluGrad where it runs (tfjs-node's Step is
 * four ops), else dy * step(y) (wasm has no ReluGrad kernel, Step it has).
 */
export function relu(x: Tensor): Tensor {
  return unaryY('relu', x, tf.relu, (dy, y) => (kernelTraits().tensorflowOps ? tensorflowOp1('ReluGrad', [dy, y]) : tf.mul(dy, tf.step(y))));
}
/** x for x > 0, alpha * x otherwise. */
export function leakyRelu(x: Tensor, alpha = 0.01): Tensor {
  return unaryX('leakyRelu', x, (t) => tf.leakyRelu(t, alpha), (dy, x) => tf.mul(dy, tf.add(tf.mul(tf.step(x), 1 - alpha), alpha)));
}
/** Logistic sigmoid 1 / (1 + e^-x). Gradient: TensorFlow's SigmoidGrad where it runs, else composed. */
export function sigmoid(x: Tensor): Tensor {
  return unaryY('sigmoid', x, tf.sigmoid, (dy, y) =>
    kernelTraits().tensorflowOps ? tensorflowOp1('SigmoidGrad', [y, dy]) : tf.mul(dy, tf.mul(y, tf.sub(1, y))),
  );
}
/** Hyperbolic tangent. Gradient: TensorFlow's TanhGrad where it runs, else composed. */
export function tanh(x: Tensor): Tensor {
  return unaryY('tanh', x, tf.tanh, (dy, y) => (kernelTraits().tensorflowOps ? tensorflowOp1('TanhGrad', [y, dy]) : tf.mul(dy, tf.sub(1, tf.square(y)))));
}

const SQRT1_2 = Math.SQRT1_2;
const INV_SQRT_2PI = 1 / Math.sqrt(2 * Math.PI);
/** GELU, exact form x * Phi(x) with the error function (as PyTorch's default). */
export function gelu(x: Tensor): Tensor {
  return unaryX(
    'gelu',
    x,
    (t) => tf.tidy(() => tf.mul(tf.mul(t, 0.5), tf.add(tf.erf(tf.mul(t, SQRT1_2)), 1))),
    (dy, x) => {
      // d/dx x*Phi(x) = Phi(x) + x*phi(x)
      const cdf = tf.mul(tf.add(tf.erf(tf.mul(x, SQRT1_2)), 1), 0.5);
      const pdf = tf.mul(tf.exp(tf.mul(tf.square(x), -0.5)), INV_SQRT_2PI);
      return tf.mul(dy, tf.add(cdf, tf.mul(x, pdf)));
    },
  );
}
