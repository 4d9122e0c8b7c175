import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { defaultGenerator, type Generator } from '../random.js';

/** Initialisers fill a new tensor of a shape given its fan-in and fan-out. */
export type Init = (shape: number[], fanIn: number, fanOut: number, gen?: Generator) => TF.Tensor;

function fill(shape: number[], f: () => number): TF.Tensor {
  const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < v.length; i++) v[i] = f();
  return tf.tensor(v, shape, 'float32');
}

/** Uniform in [-bound, bound]. */
export function uniformInit(bound: number): Init {
  return (shape, _i, _o, gen = defaultGenerator()) => fill(shape, () => (2 * gen.uniform() - 1) * bound);
}

/** Kaiming (He) uniform for ReLU networks: bound sqrt(6 / fanIn). */
export const kaimingUniform: Init = (shape, fanIn, _o, gen = defaultGenerator()) =>
  fill(shape, () => (2 * gen.uniform() - 1) * Math.sqrt(6 / fanIn));

/** Kaiming (He) normal: std sqrt(2 / fanIn). */
export const kaimingNormal: Init = (shape, fanIn, _o, gen = defaultGenerator()) =>
  fill(shape, () => gen.normal() * Math.sqrt(2 / fanIn));

/** Xavier (Glorot) uniform: bound sqrt(6 / (fanIn + fanOut)). */
export const xavierUniform: Init = (shape, fanIn, fanOut, gen = defaultGenerator()) =>
  fill(shape, () => (2 * gen.uniform() - 1) * Math.sqrt(6 / (fanIn + fanOut)));

/** Xavier (Glorot) normal: std sqrt(2 / (fanIn + fanOut)). */
export const xavierNormal: Init = (shape, fanIn, fanOut, gen = defaultGenerator()) =>
  fill(shape, () => gen.normal() * Math.sqrt(2 / (fanIn + fanOut)));

/** PyTorch's default for Linear and Conv2d weights and biases: uniform in +-1/sqrt(fanIn). */
export const defaultInit: Init = (shape, fanIn, _o, gen = defaultGenerator()) =>
  fill(shape, () => (2 * gen.uniform() - 1) / Math.sqrt(Math.max(fanIn, 1)));

/** Zeros. */
export const zerosInit: Init = (shape) => tf.zeros(shape);

/** Ones. */
export const onesInit: Init = (shape) => tf.ones(shape);

/** Initialisers by name, for options given as strings. */
export const INITS: Record<string, Init> = {
  default: defaultInit,
  kaimingUniform,
  kaimingNormal,
  xavierUniform,
  xavierNormal,
  zeros: zerosInit,
  ones: onesInit,
};

/** Resolves an initialiser given by name or as a function. */
export function resolveInit(init: Init | string | undefined, fallback: Init): Init {
  if (init == null) return fallback;
  if (typeof init === 'function') return init;
  const f = INITS[init];
  if (!f) throw new Error(`unknown initialiser '${init}'; expected one of ${Object.keys(INITS).join(', ')}`);
  return f;
}
