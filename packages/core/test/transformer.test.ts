import { tf } from '../src/tf.js';
import { beforeAll, describe, expect, it } from 'vitest';
import * as h from '../src/index.js';
import { maxRelErr } from './helpers.js';

beforeAll(async () => {
  await h.initBackend();
});

const B = 2;
const T = 5;
const D = 8;

/** Causal multi-head self-attention written with today's ops, head by head (the reference). */
function attentionComposed(x: h.Tensor, m: h.MultiheadAttention, causal: boolean): h.Tensor {
  const d = m.headDim;
  const qkv = m.inProj.forward(x); // [B, T, 3D], columns (q|k|v, head, d)
  const mask = h.tensor(Array.from({ length: T * T }, (_, i) => (causal && i % T > Math.floor(i / T) ? -1e9 : 0)), [T, T]);
  const heads: h.Tensor[] = [];
  for (let hd = 0; hd < m.heads; hd++) {
    const part = (which: number) => h.slice(qkv, [0, 0, which * D + hd * d], [B, T, d]);
    const scores = h.add(h.scale(h.matmul(part(0), h.transpose(part(1), [0, 2, 1])), 1 / Math.sqrt(d)), mask);
    heads.push(h.matmul(h.softmax(scores), part(2)));
  }
  return m.outProj.forward(h.concat(heads, 2));
}

/** Gradients of sum(f(x) * w) for x and every parameter of `m`, with the output. */
function grads(m: h.Module, f: (x: h.Tensor) => h.Tensor) {
  const x = h.randn([B, T, D], 1, 0, new h.Generator(3)).requireGrad();
  const w = h.randn([B, T, D], 1, 0, new h.Generator(4));
  m.zeroGrad();
  const out = f(x);
  h.sum(h.mul(out, w)).backward();
  const r = { out: out.dataSync().slice(), x: x.grad!.dataSync().slice(), params: m.parameters().map((p) => p.grad!.dataSync().slice()) };
  [x, w, out].forEach((t) => t.dispose());
  return r;
}

function expectClose(a: ReturnType<typeof grads>, b: ReturnType<typeof grads>, tol = 1e-4) {
  expect(maxRelErr(a.out, b.out)).toBeLessThan(tol);
  expect(maxRelErr(a.x, b.x)).toBeLessThan(tol);
  a.params.forEach((g, i) => expect(maxRelErr(g, b.params[i]!), `parameter ${i}`).toBeLessThan(tol));
}

describe('transformer layers', () => {
  it.each([1, 2, 4])('MultiheadAttention with %i head(s) equals the head-by-head composition of existing ops, values and gradients', (heads) => {
    h.manualSeed(1);
    const m = new h.MultiheadAttention(D, heads);
    expectClose(grads(m, (x) => m.forward(x)), grads(m, (x) => attentionComposed(x, m, true)));
    const nonCausal = new h.MultiheadAttention(D, heads, { causal: false });
    expectClose(grads(nonCausal, (x) => nonCausal.forward(x)), grads(nonCausal, (x) => attentionComposed(x, nonCausal, false)));
    m.dispose();
    nonCausal.dispose();
  });

  it('TransformerBlock equals pre-LayerNorm attention and GELU MLP with residuals, composed', () => {
    h.manualSeed(2);
    const blk = new h.TransformerBlock(D, 2);
    const composed = (x: h.Tensor) => {
      const a = h.add(x, attentionComposed(h.layerNorm(x, blk.ln1.weight, blk.ln1.bias), blk.attn, true));
      return h.add(a, blk.proj.forward(h.gelu(blk.fc.forward(h.layerNorm(a, blk.ln2.weight, blk.ln2.bias)))));
    };
    expectClose(grads(blk, (x) => blk.forward(x)), grads(blk, composed));
    blk.dispose();
  });

  it('a key padding mask keeps padded positions from changing the others', () => {
    h.manualSeed(3);
    const m = new h.MultiheadAttention(D, 2, { causal: false });
    const x = h.randn([1, T, D]);
    const mask = h.fromTf(tf.tensor([[0, 0, 0, 1, 1]], [1, T], 'int32'));
    const full = m.forward(x, mask);
    // The same three real positions alone, without padding: equal outputs there.
    const short = h.slice(x, [0, 0, 0], [1, 3, D]);
    const alone = m.forward(short);
    expect(maxRelErr(h.slice(full, [0, 0, 0], [1, 3, D]).dataSync(), alone.dataSync())).toBeLessThan(1e-5);
    m.dispose();
  });

  it('positional embeddings: learned ones train, sinusoidal ones are the fixed table; both refuse a sequence longer than it', () => {
    h.manualSeed(4);
    const learned = new h.LearnedPositionalEmbedding(6, 4);
    const sin = new h.SinusoidalPositionalEmbedding(6, 4);
    const x = h.zeros([2, 3, 4]);
    const y = sin.forward(x);
    expect(Array.from(y.dataSync().slice(4, 8))).toEqual(Array.from(h.sinusoidalTable(6, 4).slice(4, 8)));
    expect(sin.parameters()).toHaveLength(0);
    h.sum(learned.forward(x)).backward();
    expect(Array.from(learned.weight.grad!.dataSync().slice(0, 12))).toEqual(new Array(12).fill(2));
    expect(Array.from(learned.weight.grad!.dataSync().slice(12))).toEqual(new Array(12).fill(0));
    const long = h.zeros([1, 7, 4]);
    expect(() => learned.forward(long)).toThrow('LearnedPositionalEmbedding: a sequence of 7 positions is longer than the table of 6');
    expect(() => sin.forward(long)).toThrow('SinusoidalPositionalEmbedding: a sequence of 7 positions is longer than the table of 6');
    [x, y, long].forEach((t) => t.dispose());
    learned.dispose();
    sin.dispose();
  });

  it('refuses a width not divisible by the heads, a mask of the wrong shape, and an input of the wrong width', () => {
    expect(() => new h.MultiheadAttention(10, 4)).toThrow('MultiheadAttention: model width 10 is not divisible by 4 heads');
    const m = new h.MultiheadAttention(D, 2);
    const x = h.randn([2, T, D]);
    expect(() => m.forward(x, h.zeros([2, T + 1]))).toThrow('scaledDotProductAttention: key padding mask of shape [2,6], expected [batch, keys] = [2,5]');
    expect(() => m.forward(h.randn([2, T, D + 1]))).toThrow(`MultiheadAttention: input of shape [2,5,9], expected [batch, T, ${D}]`);
    const q = h.randn([1, 1, 3, 4]);
    expect(() => h.scaledDotProductAttention(q, h.randn([1, 1, 4, 4]), h.randn([1, 1, 4, 4]), { causal: true })).toThrow(
      'scaledDotProductAttention: causal masking needs as many queries as keys, found 3 and 4',
    );
    m.dispose();
  });
});

describe('gpt', () => {
  it('equals its composition from existing ops: embedding + positions, blocks, LayerNorm, product with the table', () => {
    h.manualSeed(8);
    const layers = h.gpt({ vocab: 10, dim: 8, heads: 2, layers: 2, maxLen: 7 });
    const [emb, b1, b2, ln] = layers as [h.TokenEmbedding, h.TransformerBlock, h.TransformerBlock, h.LayerNorm];
    const ids = h.randint(10, [3, 7], new h.Generator(9));
    const model = new h.Sequential(...layers);
    const out = model.forward(ids);
    const pos = (emb.positions as h.LearnedPositionalEmbedding).weight;
    const x0 = h.add(h.gather(emb.tokens.weight, ids), h.slice(pos, [0, 0], [7, 8]));
    const x2 = b2.forward(b1.forward(x0));
    const composed = h.matmul(h.layerNorm(x2, ln.weight, ln.bias), h.transpose(emb.tokens.weight));
    expect(maxRelErr(out.dataSync(), composed.dataSync())).toBeLessThan(1e-5);
    [ids, out, x0, x2, composed].forEach((t) => t.dispose());
    model.dispose();
  });

  it('is an ordered list of layers with a tied head, and learns a repeating text', () => {
    h.manualSeed(5);
    const layers = h.gpt({ vocab: 11, dim: 16, heads: 2, layers: 2, maxLen: 12 });
    expect(layers.map((l) => l.constructor.name)).toEqual(['TokenEmbedding', 'TransformerBlock', 'TransformerBlock', 'LayerNorm', 'TiedLinear']);
    const model = new h.Sequential(...layers);
    expect((layers[4] as h.TiedLinear).weight).toBe((layers[0] as h.TokenEmbedding).tokens.weight);
    expect(model.parameters().length).toBe(model.namedParameters(false).length - 1);
    const text = Array.from({ length: 4 * 13 }, (_, i) => (i * 3) % 11);
    const ids = h.fromTf(tf.tensor(Array.from({ length: 4 }, (_, b) => text.slice(b * 13, b * 13 + 12)), [4, 12], 'int32'));
    const next = h.fromTf(tf.tensor(Array.from({ length: 4 }, (_, b) => text.slice(b * 13 + 1, b * 13 + 13)), [4, 12], 'int32'));
    const opt = new h.Adam(model.parameters(), { lr: 3e-3 });
    const losses: number[] = [];
    for (let s = 0; s < 60; s++) {
      losses.push(
        h.tidy(() => {
          opt.zeroGrad();
          const logits = model.forward(ids);
          expect(logits.shape).toEqual([4, 12, 11]);
          const l = h.crossEntropy(logits, next);
          l.backward();
          opt.step();
          return l.item();
        }),
      );
    }
    expect(losses[0]).toBeGreaterThan(2);
    expect(losses.at(-1)).toBeLessThan(losses[0]! / 4);
    [ids, next].forEach((t) => t.dispose());
    model.dispose();
  });

  it('checkpointed blocks give the same gradients, dropout included, and 200 steps keep the live tensor count flat', () => {
    const run = (ck: boolean) => {
      h.manualSeed(6);
      const layers = h.gpt({ vocab: 9, dim: 8, heads: 2, layers: 2, maxLen: 6, dropout: 0.1 });
      const ids = h.randint(9, [3, 6], new h.Generator(1));
      const next = h.randint(9, [3, 6], new h.Generator(2));
      const forward = () => layers.reduce((x, l) => (ck && l instanceof h.TransformerBlock ? h.checkpoint((t) => l.forward(t), x) : l.forward(x)), ids);
      const params = [...new Set(layers.flatMap((l) => l.parameters()))];
      const step = () =>
        h.tidy(() => {
          for (const p of params) {
            p.grad?.dispose();
            p.grad = null;
          }
          const l = h.crossEntropy(forward(), next);
          l.backward();
          return l.item();
        });
      h.manualSeed(7);
      step();
      const g = params.map((p) => p.grad!.dataSync().slice());
      for (const p of params) {
        p.grad?.dispose();
        p.grad = null;
      }
      return { layers, ids, next, step, params, g };
    };
    const plain = run(false);
    const ck = run(true);
    ck.g.forEach((g, i) => expect(maxRelErr(g, plain.g[i]!), `parameter ${i}`).toBeLessThan(1e-4));
    const opt = new h.SGD(ck.params, { lr: 0.01 });
    const live = h.liveTensors();
    for (let i = 0; i < 200; i++) {
      opt.zeroGrad();
      ck.step();
      opt.step();
      opt.zeroGrad();
    }
    expect(h.liveTensors()).toBe(live);
    for (const r of [plain, ck]) {
      r.layers.forEach((l) => l.dispose());
      [r.ids, r.next].forEach((t) => t.dispose());
    }
  });
});
