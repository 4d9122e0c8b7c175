import { tf } from '../src/tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { beforeAll, describe, expect, it } from 'vitest';
import * as h from '../src/index.js';

beforeAll(async () => {
  await h.initBackend();
});

// f(p) = sum(c * p^2) / 2 has gradient c * p: simple enough to run the update rules by hand.
const C = [1, -0.5, 2, 0.25];
const P0 = [0.5, -1, 2, 3];

function runOurs(make: (ps: h.Parameter[]) => h.Optimizer, steps: number): number[] {
  const p = new h.Parameter(tf.tensor(P0));
  const opt = make([p]);
  const c = h.tensor(C);
  for (let i = 0; i < steps; i++) {
    opt.zeroGrad();
    h.tidy(() => h.scale(h.sum(h.mul(c, h.square(p))), 0.5)).backward();
    opt.step();
  }
  return Array.from(p.dataSync());
}

function runRef(update: (p: number[], g: number[], state: Record<string, number[]>, step: number) => number[], steps: number): number[] {
  let p = P0.slice();
  const state: Record<string, number[]> = {};
  for (let t = 1; t <= steps; t++) p = update(p, p.map((v, i) => C[i]! * v), state, t);
  return p;
}

const close = (a: number[], b: number[]) => a.forEach((v, i) => expect(v).toBeCloseTo(b[i]!, 5));

describe('optimizers follow PyTorch update rules', () => {
  it('SGD with momentum, dampening and weight decay', () => {
    const [lr, mu, damp, wd] = [0.1, 0.9, 0.1, 0.01];
    const ours = runOurs((ps) => new h.SGD(ps, { lr, momentum: mu, dampening: damp, weightDecay: wd }), 4);
    const ref = runRef((p, g, s) => {
      const d = g.map((v, i) => v + wd * p[i]!);
      s.buf = s.buf ? s.buf.map((b, i) => mu * b + (1 - damp) * d[i]!) : d.slice();
      return p.map((v, i) => v - lr * s.buf![i]!);
    }, 4);
    close(ours, ref);
  });

  it('SGD with Nesterov momentum', () => {
    const [lr, mu] = [0.05, 0.8];
    const ours = runOurs((ps) => new h.SGD(ps, { lr, momentum: mu, nesterov: true }), 4);
    const ref = runRef((p, g, s) => {
      s.buf = s.buf ? s.buf.map((b, i) => mu * b + g[i]!) : g.slice();
      return p.map((v, i) => v - lr * (g[i]! + mu * s.buf![i]!));
    }, 4);
    close(ours, ref);
  });

  const adamRef = (lr: number, wd: number, decoupled: boolean) => (p: number[], g0: number[], s: Record<string, number[]>, t: number) => {
    const [b1, b2, eps] = [0.9, 0.999, 1e-8];
    const pp = decoupled ? p.map((v) => v * (1 - lr * wd)) : p;
    const g = decoupled ? g0 : g0.map((v, i) => v + wd * p[i]!);
    s.m = (s.m ?? g.map(() => 0)).map((m, i) => b1 * m + (1 - b1) * g[i]!);
    s.v = (s.v ?? g.map(() => 0)).map((v, i) => b2 * v + (1 - b2) * g[i]! ** 2);
    return pp.map((v, i) => v - (lr / (1 - b1 ** t)) * (s.m![i]! / (Math.sqrt(s.v![i]!) / Math.sqrt(1 - b2 ** t) + eps)));
  };

  it('Adam with L2 weight decay', () => {
    close(runOurs((ps) => new h.Adam(ps, { lr: 0.1, weightDecay: 0.05 }), 5), runRef(adamRef(0.1, 0.05, false), 5));
  });

  it('AdamW with decoupled weight decay', () => {
    close(runOurs((ps) => new h.AdamW(ps, { lr: 0.1, weightDecay: 0.1 }), 5), runRef(adamRef(0.1, 0.1, true), 5));
  });

  it('refuses Nesterov without momentum and a negative learning rate', () => {
    const p = new h.Parameter(tf.zeros([1]));
    expect(() => new h.SGD([p], { lr: 0.1, nesterov: true })).toThrow(/Nesterov/);
    expect(() => new h.SGD([p], { lr: -1 })).toThrow(/learning rate/);
  });

  it('does not grow the number of live tensors over many steps', () => {
    const p = new h.Parameter(tf.tensor(P0));
    const opt = new h.Adam([p], { lr: 0.01 });
    const c = h.tensor(C);
    const step = () =>
      h.tidy(() => {
        opt.zeroGrad();
        h.sum(h.mul(c, h.square(p))).backward();
        opt.step();
      });
    step();
    const live = h.liveTensors();
    for (let i = 0; i < 50; i++) step();
    expect(h.liveTensors()).toBe(live);
  });
});

describe('gradient clipping', () => {
  it('scales all gradients by one factor to the global norm, and returns the norm before', () => {
    const a = new h.Parameter(tf.zeros([2]));
    const b = new h.Parameter(tf.zeros([1]));
    a.grad = new h.Tensor(tf.tensor([3, 0])).keep();
    b.grad = new h.Tensor(tf.tensor([4])).keep();
    expect(h.clipGradNorm([a, b], 1)).toBeCloseTo(5, 5);
    expect(Array.from(a.grad.dataSync())[0]).toBeCloseTo(0.6, 4);
    expect(Array.from(b.grad.dataSync())[0]).toBeCloseTo(0.8, 4);
    expect(h.clipGradNorm([a, b], 10)).toBeCloseTo(1, 4);
    expect(Array.from(b.grad.dataSync())[0]).toBeCloseTo(0.8, 4);
  });
});

describe('learning-rate schedules', () => {
  const opt = () => new h.SGD([new h.Parameter(tf.zeros([1]))], { lr: 1 });
  const run = (sched: h.Schedule, n: number) => {
    const s = new h.LRScheduler(opt(), sched);
    const out = [s.lr];
    for (let i = 1; i < n; i++) out.push(s.step());
    return out;
  };
  it('step decay', () => {
    expect(run(h.stepDecay(2, 0.5), 5)).toEqual([1, 1, 0.5, 0.5, 0.25]);
  });
  it('cosine annealing reaches the floor at the end', () => {
    const v = run(h.cosine(4, 0.1), 6);
    expect(v[0]).toBeCloseTo(1);
    expect(v[2]).toBeCloseTo(0.55);
    expect(v[4]).toBeCloseTo(0.1);
    expect(v[5]).toBeCloseTo(0.1);
  });
  it('linear warm-up then the following schedule', () => {
    const v = run(h.linearWarmup(4, h.stepDecay(1, 0.5)), 7);
    expect(v.map((x) => +x.toFixed(4))).toEqual([0.25, 0.5, 0.75, 1, 1, 0.5, 0.25]);
  });
});
