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

describe('deferred gradient products (deferGradProducts)', () => {
  /** A linear layer, a tied transposed head reusing its weight, and a layer whose input is 3-D. */
  function net(seed: number) {
    h.manualSeed(seed);
    const first = new h.Linear(6, 5);
    const w = first.parameters()[0]!;
    const second = new h.Linear(5, 5);
    return {
      params: [...first.parameters(), ...second.parameters()],
      forward: (x: Tensor) => h.linear(h.tanh(second.forward(h.relu(first.forward(x)))), w, null, { transposed: true }),
    };
  }
  const maxDiff = (a: Tensor, b: Tensor) => tf.max(tf.abs(tf.sub(a.data, b.data))).dataSync()[0]!;

  it('sum micro-batches\' products into .grad as the plain accumulation does, full and split backward', () => {
    const xs = [h.randn([4, 6]), h.randn([3, 6]), h.randn([2, 2, 6])];
    const plain = net(3);
    const deferred = net(3);
    for (const p of deferred.params) p.deferGradProducts = true;
    for (const [i, x] of xs.entries()) {
      h.sum(h.square(plain.forward(x))).backward();
      const out = deferred.forward(x);
      if (i === 1) {
        const { weights } = h.backwardInput(h.sum(h.square(out)), undefined, []);
        weights.run();
      } else h.sum(h.square(out)).backward();
    }
    // The weights wait as products; biases were summed at once.
    expect(deferred.params.map((p) => p.hasPendingGrad)).toEqual([true, false, true, false]);
    deferred.params.forEach((p, i) => expect(maxDiff(p.grad!, plain.params[i]!.grad!), p.name).toBeLessThan(1e-5));
    expect(deferred.params.some((p) => p.hasPendingGrad)).toBe(false);
    // Products arriving after a read are added to what was summed.
    h.sum(h.square(plain.forward(xs[0]!))).backward();
    h.sum(h.square(deferred.forward(xs[0]!))).backward();
    deferred.params.forEach((p, i) => expect(maxDiff(p.grad!, plain.params[i]!.grad!)).toBeLessThan(1e-5));
  });

  it('read inside tidy, the summed gradient outlives it; cleared, the products are dropped uncomputed; nothing leaks', () => {
    const model = net(4);
    for (const p of model.params) p.deferGradProducts = true;
    const x = h.randn([5, 6]);
    const before = h.liveTensors();
    const tfBefore = tf.memory().numTensors;
    for (let step = 0; step < 3; step++) {
      for (let mb = 0; mb < 3; mb++) h.tidy(() => h.sum(model.forward(x)).backward());
      if (step === 1) for (const p of model.params) p.clearGrad();
      else h.tidy(() => model.params.map((p) => p.grad!.shape));
      expect(model.params.every((p) => !p.grad || !p.grad.isDisposed)).toBe(true);
      for (const p of model.params) p.clearGrad();
    }
    expect(h.liveTensors()).toBe(before);
    expect(tf.memory().numTensors).toBe(tfBefore);
  });

  it('into anything but such a parameter, the product is computed at once', () => {
    const model = net(5);
    const x = new Tensor(tf.randomNormal([3, 6]), true);
    const [gx] = h.backward(h.sum(model.forward(x)), undefined, { inputs: [x] });
    expect(gx!.shape).toEqual([3, 6]);
    expect(model.params.some((p) => p.hasPendingGrad)).toBe(false);
    expect(model.params.every((p) => p.grad != null)).toBe(true);
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
