import '@tensorflow/tfjs-core/dist/register_all_gradients';
import { tf } from '../src/tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { initBackend, Generator, noGrad, Tensor, tidy, type BackendName } from '../src/index.js';

/** Backends every op is tested on (those available here; tensorflow when installed). */
export async function availableBackends(): Promise<BackendName[]> {
  const out: BackendName[] = [];
  for (const b of ['wasm', 'cpu', 'tensorflow'] as BackendName[]) {
    try {
      await initBackend(b);
      out.push(b);
    } catch {
      /* not installed here */
    }
  }
  return out;
}

/** Random float32 values from a seeded generator, as plain arrays (backend independent). */
export function randomValues(shape: number[], gen: Generator, opts: { positive?: boolean; awayFromZero?: boolean } = {}): Float32Array {
  const v = new Float32Array(shape.reduce((a, b) => a * b, 1));
  for (let i = 0; i < v.length; i++) {
    let x = gen.normal();
    if (opts.positive) x = Math.abs(x) + 0.5;
    if (opts.awayFromZero) x = Math.sign(x || 1) * (Math.abs(x) + 0.2);
    v[i] = x;
  }
  return v;
}

/** One gradient-check case: our op and an independent TensorFlow.js formulation of it. */
export interface GradCase {
  name: string;
  shapes: number[][];
  /** Our computation. */
  ours: (...xs: Tensor[]) => Tensor;
  /** The same function written with tf ops (differentiated by tf.grads). */
  ref: (...xs: TF.Tensor[]) => TF.Tensor;
  positive?: boolean;
  awayFromZero?: boolean;
  /** Inputs that are constants (no gradient), by index. */
  constant?: number[];
  /** Skip finite differences (non-smooth points, expensive ops). */
  noFiniteDiff?: boolean;
}

export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < a.length; i++) {
    num = Math.max(num, Math.abs(a[i]! - b[i]!));
    den = Math.max(den, Math.abs(b[i]!));
  }
  return num / Math.max(den, 1e-6);
}

/** Our forward values and input gradients for `sum(out * weights)`, on the active backend. */
export function oursWithGrads(c: GradCase, inputs: Float32Array[], weights: Float32Array) {
  const xs = c.shapes.map((s, i) => new Tensor(tf.tensor(inputs[i]!, s), !c.constant?.includes(i)));
  const out = c.ours(...xs);
  const w = new Tensor(tf.tensor(weights, out.shape));
  out.backward(w);
  const values = out.dataSync().slice();
  const grads = xs.map((x) => (x.grad ? (x.grad.dataSync().slice() as Float32Array) : null));
  for (const x of xs) x.dispose();
  out.dispose();
  w.dispose();
  return { values, grads, outShape: out.shape };
}

/** Reference values and gradients from tf.grads on the cpu backend. */
export async function reference(c: GradCase, inputs: Float32Array[], weights: Float32Array, outShape: number[]) {
  const prev = tf.getBackend();
  await tf.setBackend('cpu');
  const res = tf.tidy(() => {
    const xs = c.shapes.map((s, i) => tf.tensor(inputs[i]!, s));
    const w = tf.tensor(weights, outShape);
    const f = (...a: TF.Tensor[]) => tf.sum(tf.mul(c.ref(...a), w));
    const gfn = tf.grads(f);
    const grads = gfn(xs).map((g) => g.dataSync().slice() as Float32Array);
    return { values: c.ref(...xs).dataSync().slice() as Float32Array, grads };
  });
  await tf.setBackend(prev);
  return res;
}

/** Central finite differences of sum(f(x) * w) at a few coordinates of input `k`, in float64 where it matters. */
export function finiteDiff(c: GradCase, inputs: Float32Array[], weights: Float32Array, k: number, coords: number[], eps = 1e-2): number[] {
  const f = (vals: Float32Array[]) => {
    const y = tf.tidy(() => c.ref(...c.shapes.map((s, i) => tf.tensor(vals[i]!, s))));
    const v = y.dataSync();
    y.dispose();
    let acc = 0;
    for (let i = 0; i < v.length; i++) acc += v[i]! * weights[i]!;
    return acc;
  };
  return coords.map((j) => {
    const plus = inputs.map((a) => a.slice());
    const minus = inputs.map((a) => a.slice());
    plus[k]![j]! += eps;
    minus[k]![j]! -= eps;
    return (f(plus) - f(minus)) / (2 * eps);
  });
}

/** The shape of a case's output, computed without recording. */
export function outputShape(c: GradCase, inputs: Float32Array[]): number[] {
  return noGrad(() =>
    tidy(() => {
      const out = c.ours(...c.shapes.map((s, i) => new Tensor(tf.tensor(inputs[i]!, s))));
      return out.shape;
    }),
  );
}
