import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { tf } from '../src/tf.js';
import { beforeAll, describe, expect, it } from 'vitest';
import * as h from '../src/index.js';
import { maxRelErr } from './helpers.js';

beforeAll(async () => {
  await h.initBackend();
});

/** Embedding, a hidden layer, and an output head tied to the embedding's table. */
class TinyLM extends h.Module {
  emb: h.Embedding;
  hidden: h.Linear;
  head: h.TiedLinear;
  constructor(vocab = 7, dim = 5) {
    super();
    this.emb = new h.Embedding(vocab, dim);
    this.hidden = new h.Linear(dim, dim);
    this.head = new h.TiedLinear(this.emb.weight, { bias: true });
  }
  forward(ids: h.Tensor): h.Tensor {
    return this.head.forward(h.tanh(this.hidden.forward(this.emb.forward(ids))));
  }
}

const ids = () => h.fromTf(tf.tensor([0, 3, 3, 6, 2], [5], 'int32'));
const targets = () => h.fromTf(tf.tensor([3, 1, 0, 6, 6], [5], 'int32'));

describe('shared parameters', () => {
  it('are listed once by parameters() and namedParameters(), under their first path', () => {
    h.manualSeed(1);
    const m = new TinyLM();
    expect(m.namedParameters().map(([k]) => k)).toEqual(['emb.weight', 'hidden.weight', 'hidden.bias', 'head.bias']);
    expect(m.parameters().filter((p) => p === m.emb.weight)).toHaveLength(1);
    expect(m.namedParameters(false).map(([k]) => k)).toContain('head.weight');
    expect([...m.stateDict().keys()]).toEqual(['emb.weight', 'hidden.weight', 'hidden.bias', 'head.bias']);
    m.dispose();
  });

  it('get the sum of the gradients of both uses', () => {
    h.manualSeed(2);
    const tied = new TinyLM();
    const x = ids();
    const y = targets();
    h.crossEntropy(tied.forward(x), y).backward();
    // The same network with the head's weight a separate copy of the table.
    const headCopy = new h.Parameter(tf.clone(tied.emb.weight.data));
    const embCopy = new h.Parameter(tf.clone(tied.emb.weight.data));
    const out = h.linear(h.tanh(tied.hidden.forward(h.gather(embCopy, x))), headCopy, tied.head.bias, { transposed: true });
    h.crossEntropy(out, y).backward();
    const sum = tf.add(embCopy.grad!.data, headCopy.grad!.data);
    expect(maxRelErr(tied.emb.weight.grad!.dataSync(), sum.dataSync())).toBeLessThan(1e-5);
    [x, y, out, headCopy, embCopy].forEach((t) => t.dispose());
    sum.dispose();
    tied.dispose();
  });

  it('are updated once by an optimizer, and stay one tensor through a checkpoint round trip', () => {
    h.manualSeed(3);
    const m = new TinyLM();
    const opt = new h.SGD(m.parameters(), { lr: 0.5 });
    const before = m.emb.weight.dataSync().slice();
    const loss = h.crossEntropy(m.forward(ids()), targets());
    loss.backward();
    const g = m.emb.weight.grad!.dataSync().slice();
    opt.step();
    const after = m.emb.weight.dataSync();
    expect(maxRelErr(after, before.map((v, i) => v - 0.5 * g[i]!))).toBeLessThan(1e-6);
    expect(m.head.weight).toBe(m.emb.weight);

    const file = join(mkdtempSync(join(tmpdir(), 'hpdl-tied-')), 'm.safetensors');
    h.saveCheckpoint(file, { model: m, optimizer: opt });
    h.manualSeed(99);
    const fresh = new TinyLM();
    h.loadCheckpoint(file, { model: fresh, optimizer: new h.SGD(fresh.parameters(), { lr: 0.5 }) });
    expect(fresh.head.weight).toBe(fresh.emb.weight);
    expect(maxRelErr(fresh.head.weight.dataSync(), after)).toBe(0);
    // A state naming the shared table under its other path as well (as PyTorch's does) loads too.
    const withAlias = new Map(m.stateDict());
    withAlias.set('head.weight', m.emb.weight.data);
    fresh.loadStateDict(withAlias);
    [loss].forEach((t) => t.dispose());
    m.dispose();
    fresh.dispose();
  });

  it('refuses a shared weight that is not a matrix, and a transposed weight of the wrong width', () => {
    const v = new h.Parameter(tf.zeros([4]));
    expect(() => new h.TiedLinear(v)).toThrow('TiedLinear: the shared weight must be a matrix [out, in], found shape [4]');
    const w = new h.Parameter(tf.zeros([6, 3]));
    const x = h.randn([2, 4]);
    expect(() => h.linear(x, w, null, { transposed: true })).toThrow('linear: input of shape [2,4] does not fit a transposed weight of shape [6,3] (expected last dimension 3)');
    [v, w, x].forEach((t) => t.dispose());
  });
});
