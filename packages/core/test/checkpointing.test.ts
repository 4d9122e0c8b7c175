import { tf } from '../src/tf.js';
import { beforeAll, describe, expect, it } from 'vitest';
import * as h from '../src/index.js';
import { maxRelErr } from './helpers.js';

beforeAll(async () => {
  await h.initBackend();
});

/** A block with parameters, a non-linearity and dropout: what a transformer block checkpoints. */
function block(seed: number) {
  h.manualSeed(seed);
  const l1 = new h.Linear(6, 12);
  const l2 = new h.Linear(12, 6);
  const drop = new h.Dropout(0.3);
  const fn = (x: h.Tensor) => h.add(x, l2.forward(drop.forward(h.gelu(l1.forward(x)))));
  const params = [...l1.parameters(), ...l2.parameters()];
  return { fn, params, dispose: () => [l1, l2].forEach((m) => m.dispose()) };
}

/** Gradients of the input and every parameter for sum(out * w), with or without checkpointing, full or split. */
function gradients(mode: 'plain' | 'checkpoint' | 'split', nested = false) {
  const b = block(3);
  const x = h.randn([4, 6], 1, 0, new h.Generator(5)).requireGrad();
  const w = h.randn([4, 6], 1, 0, new h.Generator(6));
  h.manualSeed(11); // dropout's seeds
  const f = (t: h.Tensor) => (nested ? h.checkpoint((u) => b.fn(h.checkpoint(b.fn, u)), t) : b.fn(b.fn(t)));
  const out = mode === 'plain' ? f(x) : h.checkpoint(f, x);
  const loss = h.sum(h.mul(out, w));
  let gx: h.Tensor | null;
  if (mode === 'split') {
    const r = h.backwardInput(loss, undefined, [x]);
    gx = r.inputGrads[0]!;
    expect(b.params.every((p) => p.grad == null)).toBe(true); // the weight half has not run yet
    r.weights.run();
  } else {
    gx = h.backward(loss, undefined, { inputs: [x] })[0]!;
  }
  const result = { x: gx!.dataSync().slice(), params: b.params.map((p) => p.grad!.dataSync().slice()), out: out.dataSync().slice() };
  [x, w, out, loss, gx!].forEach((t) => t.dispose());
  b.dispose();
  return result;
}

describe('checkpoint', () => {
  it('gives the gradients of the uncheckpointed function, dropout included, full and split backward', () => {
    const ref = gradients('plain');
    for (const mode of ['checkpoint', 'split'] as const) {
      const got = gradients(mode);
      expect(maxRelErr(got.out, ref.out), mode).toBeLessThan(1e-6);
      expect(maxRelErr(got.x, ref.x), mode).toBeLessThan(1e-5);
      got.params.forEach((g, i) => expect(maxRelErr(g, ref.params[i]!), `${mode} parameter ${i}`).toBeLessThan(1e-5));
    }
  });

  it('nests: a checkpoint inside a checkpoint replays the same randomness', () => {
    const ref = gradients('plain');
    const got = gradients('checkpoint', true);
    expect(maxRelErr(got.x, ref.x)).toBeLessThan(1e-5);
    got.params.forEach((g, i) => expect(maxRelErr(g, ref.params[i]!), `parameter ${i}`).toBeLessThan(1e-5));
  });

  it('keeps only its inputs between forward and backward', () => {
    const b = block(3);
    const x = h.randn([64, 6]).requireGrad();
    const before = h.liveTensors();
    const plain = b.fn(b.fn(x));
    const heldPlain = h.liveTensors() - before;
    const ck = h.checkpoint((t) => b.fn(b.fn(t)), x);
    const heldCk = h.liveTensors() - before - heldPlain;
    // The output, and one reference to the input.
    expect(heldCk).toBe(2);
    expect(heldPlain).toBeGreaterThan(10);
    h.sum(ck).backward();
    h.sum(plain).backward();
    [x, plain, ck].forEach((t) => t.dispose());
    b.dispose();
  });

  it('takes integer inputs (token ids) and reaches the parameters used inside', () => {
    h.manualSeed(1);
    const emb = new h.Embedding(10, 4);
    const ids = h.fromTf(tf.tensor([1, 3, 3, 7], [4], 'int32'));
    const out = h.checkpoint((i) => h.tanh(emb.forward(i)), ids);
    h.sum(out).backward();
    const g = emb.weight.grad!.arraySync() as number[][];
    expect(g[3]!.every((v) => v !== 0)).toBe(true); // used twice
    expect(g[0]!.every((v) => v === 0)).toBe(true); // not used
    [out, ids].forEach((t) => t.dispose());
    emb.dispose();
  });

  it('leaves no tensors behind over many steps, nor when a split backward drops its weight half', () => {
    const b = block(4);
    const opt = new h.SGD(b.params, { lr: 0.01 });
    const x = h.randn([8, 6]);
    const step = (split: boolean) =>
      h.tidy(() => {
        opt.zeroGrad();
        const loss = h.mean(h.square(h.checkpoint((t) => b.fn(b.fn(t)), x)));
        if (split) h.backwardInput(loss, undefined, []).weights.discard();
        else loss.backward();
        opt.step();
        opt.zeroGrad();
      });
    step(false);
    step(true);
    const live = h.liveTensors();
    for (let i = 0; i < 20; i++) step(i % 2 === 0);
    expect(h.liveTensors()).toBe(live);
    x.dispose();
    b.dispose();
  });

  it('runs the function as it is when nothing is recorded, and refuses a function that returns no Tensor', () => {
    const b = block(3);
    const x = h.randn([2, 6]);
    const y = h.noGrad(() => h.checkpoint(b.fn, x));
    expect(y.requiresGrad).toBe(false);
    expect(() => h.checkpoint(() => 3 as unknown as h.Tensor, x)).toThrow('checkpoint: the function must return one Tensor, found 3');
    [x, y].forEach((t) => t.dispose());
    b.dispose();
  });
});
