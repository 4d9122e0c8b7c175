import { tf } from '../src/tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import '@tensorflow/tfjs-core/dist/register_all_gradients';
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import * as h from '../src/index.js';
import { Tensor } from '../src/index.js';
import { maxRelErr } from './helpers.js';

const here = dirname(fileURLToPath(import.meta.url));

beforeAll(async () => {
  await h.initBackend();
});

function cnn() {
  return new h.Sequential(
    new h.Conv2d(1, 4, 3, { padding: 'same' }),
    new h.ReLU(),
    new h.MaxPool2d(2),
    new h.Flatten(),
    new h.Linear(4 * 4 * 4, 10),
  );
}

function digest(model: h.Module): string {
  const hash = createHash('sha256');
  for (const [k, p] of model.namedParameters()) hash.update(k).update(Buffer.from((p.dataSync() as Float32Array).buffer));
  return hash.digest('hex');
}

describe('modules', () => {
  it('names parameters by their path, in assignment order', () => {
    const m = cnn();
    expect(m.namedParameters().map((e) => e[0])).toEqual(['0.weight', '0.bias', '4.weight', '4.bias']);
    expect(m.numParameters()).toBe(3 * 3 * 1 * 4 + 4 + 64 * 10 + 10);
    const lstm = new h.LSTM(3, 5, { numLayers: 2 });
    expect(lstm.namedParameters().map((e) => e[0])).toEqual([
      'layers.0.weightIh', 'layers.0.weightHh', 'layers.0.biasIh', 'layers.0.biasHh',
      'layers.1.weightIh', 'layers.1.weightHh', 'layers.1.biasIh', 'layers.1.biasHh',
    ]);
  });

  it('gives the same parameters for the same seed, in this process and in another', () => {
    h.manualSeed(42);
    const a = digest(cnn());
    h.manualSeed(42);
    expect(digest(cnn())).toBe(a);
    h.manualSeed(43);
    expect(digest(cnn())).not.toBe(a);
    const script = `
      import * as h from ${JSON.stringify(join(here, '../dist/index.js'))};
      import { createHash } from 'node:crypto';
      await h.initBackend('cpu');
      h.manualSeed(42);
      const m = new h.Sequential(new h.Conv2d(1, 4, 3, { padding: 'same' }), new h.ReLU(), new h.MaxPool2d(2), new h.Flatten(), new h.Linear(64, 10));
      const hash = createHash('sha256');
      for (const [k, p] of m.namedParameters()) hash.update(k).update(Buffer.from(p.dataSync().buffer));
      console.log(hash.digest('hex'));`;
    const out = execFileSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8' });
    expect(out.trim()).toBe(a);
  });

  it('switches dropout and batch norm between training and evaluation', () => {
    h.manualSeed(0);
    const m = new h.Sequential(new h.BatchNorm(4), new h.Dropout(0.5));
    const x = h.add(h.scale(h.randn([64, 4]), 3), 2);
    const yTrain = m.forward(x);
    const zeros = Array.from(yTrain.dataSync()).filter((v) => v === 0).length;
    expect(zeros).toBeGreaterThan(64);
    expect(zeros).toBeLessThan(192);
    const rm = Array.from(m.namedBuffers()[0]![1].get().dataSync());
    expect(rm.every((v) => v > 0.1 && v < 0.3)).toBe(true); // 0.1 * batch mean (~2)
    m.eval();
    expect(m.training).toBe(false);
    const yEval = m.forward(x);
    expect(Array.from(yEval.dataSync()).some((v) => v === 0)).toBe(false);
  });

  it('names the layer and both shapes when an input does not fit', () => {
    const m = new h.Linear(8, 4);
    expect(() => m.forward(h.randn([2, 5]))).toThrow('linear: input of shape [2,5] does not fit a weight of shape [8,4] (expected last dimension 8)');
    const c = new h.Conv2d(3, 4, 3);
    expect(() => c.forward(h.randn([1, 8, 8, 2]))).toThrow(/has 2 channels, filter \[3,3,3,4\] expects 3/);
  });
});

// Independent formulations of the recurrent cells with tf ops, differentiated by tf.grads.
type Weights = TF.Tensor[];
function refRecurrent(kind: 'RNN' | 'LSTM' | 'GRU', x: TF.Tensor, ws: Weights, layers: number, hidden: number): TF.Tensor {
  const [b, t] = x.shape as [number, number];
  let seq = x;
  for (let l = 0; l < layers; l++) {
    const [wih, whh, bih, bhh] = ws.slice(4 * l, 4 * l + 4) as [TF.Tensor, TF.Tensor, TF.Tensor, TF.Tensor];
    let hs = tf.zeros([b, hidden]);
    let cs = tf.zeros([b, hidden]);
    const outs: TF.Tensor[] = [];
    for (let s = 0; s < t; s++) {
      const xt = tf.reshape(tf.slice(seq, [0, s, 0], [b, 1, -1]), [b, -1]);
      const gx = tf.add(tf.matMul(xt, wih), bih);
      const gh = tf.add(tf.matMul(hs, whh), bhh);
      if (kind === 'RNN') hs = tf.tanh(tf.add(gx, gh));
      else if (kind === 'LSTM') {
        const [i, f, g, o] = tf.split(tf.add(gx, gh), 4, 1) as TF.Tensor[];
        cs = tf.add(tf.mul(tf.sigmoid(f!), cs), tf.mul(tf.sigmoid(i!), tf.tanh(g!)));
        hs = tf.mul(tf.sigmoid(o!), tf.tanh(cs));
      } else {
        const [xr, xz, xn] = tf.split(gx, 3, 1) as TF.Tensor[];
        const [hr, hz, hn] = tf.split(gh, 3, 1) as TF.Tensor[];
        const r = tf.sigmoid(tf.add(xr!, hr!));
        const z = tf.sigmoid(tf.add(xz!, hz!));
        const n = tf.tanh(tf.add(xn!, tf.mul(r, hn!)));
        hs = tf.add(tf.mul(tf.sub(1, z), n), tf.mul(z, hs));
      }
      outs.push(hs);
    }
    seq = tf.stack(outs, 1);
  }
  return seq;
}

describe.each(['RNN', 'LSTM', 'GRU'] as const)('%s', (kind) => {
  it('matches an independent tf formulation in outputs and all gradients', () => {
    h.manualSeed(7);
    const Cls = { RNN: h.RNN, LSTM: h.LSTM, GRU: h.GRU }[kind];
    const m = new Cls(3, 4, { numLayers: 2 });
    const xv = h.randn([2, 5, 3]);
    const dyv = h.randn([2, 5, 4]);
    const x = new Tensor(tf.clone(xv.data), true);
    const y = m.forward(x);
    const [gx] = h.backward(y, dyv, { inputs: [x] });

    const params = m.parameters().map((p) => tf.clone(p.data));
    const f = (...args: TF.Tensor[]) => tf.sum(tf.mul(refRecurrent(kind, args[0]!, args.slice(1), 2, 4), dyv.data));
    const refY = refRecurrent(kind, xv.data, params, 2, 4);
    expect(maxRelErr(y.dataSync(), refY.dataSync())).toBeLessThan(1e-5);
    const refGrads = tf.grads(f)([xv.data, ...params]);
    expect(maxRelErr(gx!.dataSync(), refGrads[0]!.dataSync())).toBeLessThan(1e-4);
    m.parameters().forEach((p, i) => {
      expect(maxRelErr(p.grad!.dataSync(), refGrads[i + 1]!.dataSync()), p.name).toBeLessThan(1e-4);
    });
  });

  it('takes sequences of any length and an initial state, and checks its shape', () => {
    h.manualSeed(8);
    const Cls = { RNN: h.RNN, LSTM: h.LSTM, GRU: h.GRU }[kind];
    const m = new Cls(3, 4);
    for (const t of [1, 3, 9]) expect(m.forward(h.randn([2, t, 3])).shape).toEqual([2, t, 4]);
    const { state } = m.forwardWithState(h.randn([2, 3, 3]));
    const next = m.forwardWithState(h.randn([2, 2, 3]), state);
    expect(next.output.shape).toEqual([2, 2, 4]);
    expect(() => m.forward(h.randn([2, 3, 5]))).toThrow(`${kind}: input must be [batch, time, 3], found [2,3,5]`);
    expect(() => m.forwardWithState(h.randn([2, 3, 3]), { h: [h.randn([3, 4])], c: [h.randn([3, 4])] })).toThrow(/initial h of layer 0 has shape \[3,4\], expected \[2,4\]/);
  });
});

describe('Embedding', () => {
  it('looks up rows and scatters gradients back, repeated indices added', () => {
    h.manualSeed(1);
    const e = new h.Embedding(5, 2);
    const idx = new Tensor(tf.tensor([[1, 1], [4, 0]], [2, 2], 'int32'));
    const y = e.forward(idx);
    expect(y.shape).toEqual([2, 2, 2]);
    h.sum(y).backward();
    expect(Array.from(e.weight.grad!.dataSync())).toEqual([1, 1, 2, 2, 0, 0, 0, 0, 1, 1]);
    expect(() => e.forward(h.randn([2]))).toThrow(/indices must be int32/);
  });
});

describe('dropout', () => {
  it('passes the gradient through kept elements only, scaled like the values, and repeats with the seed', () => {
    const x = h.add(h.abs(h.randn([1000], 1, 0, new h.Generator(3))), 0.5).requireGrad();
    const y = h.dropout(x, 0.3, true, new h.Generator(11));
    h.sum(y).backward();
    const xv = x.dataSync(), yv = y.dataSync(), g = x.grad!.dataSync();
    let dropped = 0;
    for (let i = 0; i < xv.length; i++) {
      if (yv[i] === 0) {
        dropped++;
        expect(g[i]).toBe(0);
      } else {
        expect(yv[i]! / xv[i]!).toBeCloseTo(1 / 0.7, 5);
        expect(g[i]).toBeCloseTo(1 / 0.7, 5);
      }
    }
    expect(dropped).toBeGreaterThan(220);
    expect(dropped).toBeLessThan(380);
    const again = h.dropout(x, 0.3, true, new h.Generator(11)).dataSync();
    expect(Array.from(again)).toEqual(Array.from(yv));
    expect(h.dropout(x, 0.3, false)).toBe(x);
    expect(() => h.dropout(x, 1)).toThrow(/probability must be in \[0, 1\)/);
  });
});
