import { tf } from '../src/tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import * as h from '../src/index.js';
import { AutogradError, Tensor } from '../src/index.js';

const leaf = (values: number[], shape: number[]) => new Tensor(tf.tensor(values, shape), true);
const arr = (t: Tensor | null) => Array.from(t!.dataSync());

beforeAll(async () => {
  await h.initBackend();
});

describe('backward', () => {
  it('accumulates the gradient of a tensor used more than once', () => {
    const x = leaf([1, 2, 3], [3]);
    h.sum(h.add(h.mul(x, x), x)).backward(); // d/dx (x^2 + x) = 2x + 1
    expect(arr(x.grad)).toEqual([3, 5, 7]);
  });

  it('adds into .grad across backward calls until cleared', () => {
    const x = leaf([1, 2], [2]);
    h.sum(h.scale(x, 3)).backward();
    h.sum(h.scale(x, 3)).backward();
    expect(arr(x.grad)).toEqual([6, 6]);
  });

  it('refuses a non-scalar output without a gradient, naming its shape', () => {
    const x = leaf([1, 2], [2]);
    expect(() => h.scale(x, 2).backward()).toThrow(/non-scalar output of shape \[2\]/);
  });

  it('refuses an output gradient of the wrong shape', () => {
    const x = leaf([1, 2], [2]);
    expect(() => h.scale(x, 2).backward(tf.ones([3]))).toThrow(/shape \[3\], expected the output's shape \[2\]/);
  });

  it('refuses to run twice through a released graph, and runs twice with retainGraph', () => {
    const x = leaf([1, 2], [2]);
    const y = h.sum(h.mul(x, x));
    y.backward(undefined, { retainGraph: true });
    y.backward();
    expect(arr(x.grad)).toEqual([4, 8]);
    expect(() => y.backward()).toThrow(AutogradError);
  });

  it('returns gradients of given inputs instead of accumulating them', () => {
    const x = leaf([1, 2], [2]);
    const w = leaf([3, 4], [2]);
    const y = h.mul(x, w);
    const [gx] = h.backward(y, tf.tensor([1, 10]), { inputs: [x] });
    expect(arr(gx!)).toEqual([3, 40]);
    expect(x.grad).toBeNull();
    expect(arr(w.grad)).toEqual([1, 20]);
  });

  it('computes no gradient for inputs that do not require one', () => {
    const x = new Tensor(tf.tensor([1, 2]), false);
    const w = leaf([3, 4], [2]);
    h.sum(h.mul(x, w)).backward();
    expect(x.grad).toBeNull();
    expect(arr(w.grad)).toEqual([1, 2]);
  });

  it('records nothing under noGrad', () => {
    const x = leaf([1, 2], [2]);
    const y = h.noGrad(() => h.mul(x, x));
    expect(y.requiresGrad).toBe(false);
    expect(y.gradFn).toBeNull();
    expect(h.isGradEnabled()).toBe(true);
  });

  it('frees what it saved once backward has used it', () => {
    const x = leaf([1, 2, 3, 4], [2, 2]);
    const w = leaf([1, 0, 0, 1], [2, 2]);
    const base = h.liveTensors();
    const loss = h.tidy(() => h.sum(h.tanh(h.matmul(x, w))));
    expect(h.liveTensors()).toBeGreaterThan(base + 1);
    loss.backward();
    loss.dispose();
    // Only the two new gradients remain.
    expect(h.liveTensors()).toBe(base + 2);
  });
});

describe('split backward (zero-bubble B then W)', () => {
  function net(seed: number) {
    h.manualSeed(seed);
    return new h.Sequential(new h.Linear(5, 7), new h.Tanh(), new h.LayerNorm(7), new h.Linear(7, 3));
  }

  it('gives the same input and parameter gradients as one full backward', () => {
    const input = h.randn([4, 5]);
    const dy = h.randn([4, 3]);
    const a = net(1);
    const xa = new Tensor(tf.clone(input.data), true);
    const [gFull] = h.backward(a.forward(xa), dy, { inputs: [xa] });

    const b = net(1);
    const xb = new Tensor(tf.clone(input.data), true);
    const { inputGrads, weights } = h.backwardInput(b.forward(xb), dy, [xb]);
    expect(arr(inputGrads[0]!)).toEqual(arr(gFull!));
    // B computes no parameter gradient; W computes them all.
    expect(b.parameters().every((p) => p.grad == null)).toBe(true);
    weights.run();
    const pa = a.parameters();
    b.parameters().forEach((p, i) => {
      const d = tf.max(tf.abs(tf.sub(p.grad!.data, pa[i]!.grad!.data))).dataSync()[0]!;
      expect(d, p.name).toBeLessThan(1e-6);
    });
    expect(() => weights.run()).toThrow(/already computed/);
  });

  it('keeps only what W needs between B and W, and frees it after W', () => {
    const model = net(2);
    const input = h.randn([4, 5]);
    const dy = h.randn([4, 3]);
    const before = h.liveTensors();
    const x = new Tensor(tf.clone(input.data), true);
    const out = h.tidy(() => model.forward(x));
    const { inputGrads, weights } = h.backwardInput(out, dy, [x]);
    out.dispose();
    x.dispose();
    inputGrads[0]!.dispose();
    weights.run();
    model.zeroGrad();
    expect(h.liveTensors()).toBe(before);
  });
});

describe('tidy', () => {
  it('disposes every tensor created inside except those returned', () => {
    const before = h.liveTensors();
    const { a } = h.tidy(() => {
      const t = h.randn([3]);
      const u = h.exp(t);
      return { a: h.add(u, 1) };
    });
    expect(h.liveTensors()).toBe(before + 1);
    a.dispose();
    expect(h.liveTensors()).toBe(before);
  });

  it('disposes everything when the function throws', () => {
    const before = h.liveTensors();
    expect(() =>
      h.tidy(() => {
        h.randn([3]);
        throw new Error('boom');
      }),
    ).toThrow('boom');
    expect(h.liveTensors()).toBe(before);
  });
});
