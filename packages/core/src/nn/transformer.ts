import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { ShapeError, fmtShape } from '../errors.js';
import { scaledDotProductAttention } from '../ops/attention.js';
import { add } from '../ops/binary.js';
import { reshape, slice, transpose, unstack } from '../ops/movement.js';
import { dropout } from '../ops/nn.js';
import { gelu } from '../ops/unary.js';
import { defaultGenerator, type Generator } from '../random.js';
import { Tensor } from '../tensor.js';
import { Embedding, Linear, TiedLinear } from './layers.js';
import { Module, Parameter } from './module.js';
import { LayerNorm } from './norm.js';

/** Options of MultiheadAttention and TransformerBlock. */
export interface AttentionLayerOptions {
  /** Each position attends only to itself and earlier positions (a language model). Default true. */
  causal?: boolean;
  /** Dropout on the attention weights and on each residual branch (default 0). */
  dropout?: number;
  /** Where initial weights and dropout draw from (default: the global generator). */
  generator?: Generator;
}

/**
 * Multi-head self-attention over [batch, T, dim]: one packed projection to queries, keys and values
 * ([dim, 3 dim]), scaled dot-product attention per head, and an output projection.
 */
export class MultiheadAttention extends Module {
  inProj: Linear;
  outProj: Linear;
  readonly headDim: number;
  readonly causal: boolean;
  readonly dropoutP: number;
  private readonly _gen: Generator | undefined;
  constructor(readonly dim: number, readonly heads: number, opts: AttentionLayerOptions = {}) {
    super();
    if (!Number.isInteger(heads) || heads < 1 || dim % heads !== 0) {
      throw new ShapeError(`MultiheadAttention: model width ${dim} is not divisible by ${heads} heads`);
    }
    this.headDim = dim / heads;
    this.causal = opts.causal ?? true;
    this.dropoutP = opts.dropout ?? 0;
    this._gen = opts.generator;
    this.inProj = new Linear(dim, 3 * dim, { generator: opts.generator });
    this.outProj = new Linear(dim, dim, { generator: opts.generator });
  }

  /** Self-attention of x [batch, T, dim]; `keyPaddingMask` [batch, T] is nonzero at padding. */
  forward(x: Tensor, keyPaddingMask?: Tensor | null): Tensor {
    if (x.rank !== 3 || x.shape[2] !== this.dim) {
      throw new ShapeError(`MultiheadAttention: input of shape ${fmtShape(x.shape)}, expected [batch, T, ${this.dim}]`);
    }
    const [b, t] = x.shape as [number, number];
    // [b, t, 3, heads, d] -> [3, b, heads, t, d]: queries, keys and values, each [b, heads, t, d].
    const qkv = transpose(reshape(this.inProj.forward(x), [b, t, 3, this.heads, this.headDim]), [2, 0, 3, 1, 4]);
    const [q, k, v] = unstack(qkv, 0) as [Tensor, Tensor, Tensor];
    const o = scaledDotProductAttention(q, k, v, {
      causal: this.causal,
      keyPaddingMask,
      dropout: this.dropoutP,
      training: this.training,
      generator: this._gen,
    });
    return this.outProj.forward(reshape(transpose(o, [0, 2, 1, 3]), [b, t, this.dim]));
  }
}

/**
 * A pre-LayerNorm transformer block (GPT-2's): x + attention(LN(x)), then x + MLP(LN(x)) with a
 * hidden layer of `mlpRatio` x dim and GELU; dropout (if any) on each branch before the residual.
 */
export class TransformerBlock extends Module {
  ln1: LayerNorm;
  attn: MultiheadAttention;
  ln2: LayerNorm;
  fc: Linear;
  proj: Linear;
  readonly dropoutP: number;
  private readonly _gen: Generator | undefined;
  constructor(readonly dim: number, readonly heads: number, opts: AttentionLayerOptions & { mlpRatio?: number } = {}) {
    super();
    this.ln1 = new LayerNorm(dim);
    this.attn = new MultiheadAttention(dim, heads, opts);
    this.ln2 = new LayerNorm(dim);
    const hidden = Math.round((opts.mlpRatio ?? 4) * dim);
    this.fc = new Linear(dim, hidden, { generator: opts.generator });
    this.proj = new Linear(hidden, dim, { generator: opts.generator });
    this.dropoutP = opts.dropout ?? 0;
    this._gen = opts.generator;
  }

  forward(x: Tensor, keyPaddingMask?: Tensor | null): Tensor {
    const branch = (y: Tensor) => (this.dropoutP > 0 ? dropout(y, this.dropoutP, this.training, this._gen ?? defaultGenerator()) : y);
    const a = add(x, branch(this.attn.forward(this.ln1.forward(x), keyPaddingMask)));
    return add(a, branch(this.proj.forward(gelu(this.fc.forward(this.ln2.forward(a))))));
  }
}

function checkLength(what: string, t: number, maxLen: number): void {
  if (t > maxLen) throw new ShapeError(`${what}: a sequence of ${t} positions is longer than the table of ${maxLen}`);
}

/** Adds a learned vector per position to x [batch, T, dim] (GPT-2's position embedding). */
export class LearnedPositionalEmbedding extends Module {
  weight: Parameter;
  constructor(readonly maxLen: number, readonly dim: number, opts: { generator?: Generator; std?: number } = {}) {
    super();
    const gen = opts.generator ?? defaultGenerator();
    const std = opts.std ?? 0.02;
    const v = new Float32Array(maxLen * dim);
    for (let i = 0; i < v.length; i++) v[i] = std * gen.normal();
    this.weight = new Parameter(tf.tensor(v, [maxLen, dim]));
  }
  forward(x: Tensor): Tensor {
    const t = x.shape[1]!;
    checkLength('LearnedPositionalEmbedding', t, this.maxLen);
    return add(x, slice(this.weight, [0, 0], [t, this.dim]));
  }
}

/** The fixed sinusoidal table of "Attention is all you need": sin on even, cos on odd features. */
export function sinusoidalTable(maxLen: number, dim: number): Float32Array {
  const v = new Float32Array(maxLen * dim);
  for (let pos = 0; pos < maxLen; pos++) {
    for (let i = 0; i < dim; i += 2) {
      const angle = pos / 10000 ** (i / dim);
      v[pos * dim + i] = Math.sin(angle);
      if (i + 1 < dim) v[pos * dim + i + 1] = Math.cos(angle);
    }
  }
  return v;
}

/** Adds the fixed sinusoidal encoding of each position to x [batch, T, dim]; nothing to train. */
export class SinusoidalPositionalEmbedding extends Module {
  private _table: TF.Tensor;
  constructor(readonly maxLen: number, readonly dim: number) {
    super();
    this._table = tf.keep(tf.tensor(sinusoidalTable(maxLen, dim), [maxLen, dim]));
  }
  forward(x: Tensor): Tensor {
    const t = x.shape[1]!;
    checkLength('SinusoidalPositionalEmbedding', t, this.maxLen);
    const table = new Tensor(tf.slice(this._table, [0, 0], [t, this.dim]));
    const y = add(x, table);
    table.dispose();
    return y;
  }
  override dispose(): void {
    super.dispose();
    this._table.dispose();
  }
}

/** Token embedding, scaled or not, plus a position embedding: the first layer of a GPT. */
export class TokenEmbedding extends Module {
  tokens: Embedding;
  positions: LearnedPositionalEmbedding | SinusoidalPositionalEmbedding;
  readonly dropoutP: number;
  private readonly _gen: Generator | undefined;
  constructor(
    readonly vocab: number,
    readonly dim: number,
    readonly maxLen: number,
    opts: { positional?: 'learned' | 'sinusoidal'; dropout?: number; generator?: Generator } = {},
  ) {
    super();
    this.tokens = new Embedding(vocab, dim, { generator: opts.generator });
    // GPT-2 initialises embeddings with std 0.02 (Embedding's default is 1).
    const old = this.tokens.weight.data;
    this.tokens.weight.data = tf.keep(tf.mul(old, 0.02));
    old.dispose();
    this.positions = opts.positional === 'sinusoidal' ? new SinusoidalPositionalEmbedding(maxLen, dim) : new LearnedPositionalEmbedding(maxLen, dim, { generator: opts.generator });
    this.dropoutP = opts.dropout ?? 0;
    this._gen = opts.generator;
  }
  /** Token ids [batch, T] (int32) to vectors [batch, T, dim]. */
  forward(ids: Tensor): Tensor {
    if (ids.rank !== 2) throw new ShapeError(`TokenEmbedding: token ids of shape ${fmtShape(ids.shape)}, expected [batch, T]`);
    const y = this.positions.forward(this.tokens.forward(ids));
    return this.dropoutP > 0 ? dropout(y, this.dropoutP, this.training, this._gen ?? defaultGenerator()) : y;
  }
}

/** Options of `gpt`. */
export interface GPTOptions {
  vocab: number;
  /** Model width. */
  dim: number;
  heads: number;
  /** Number of transformer blocks. */
  layers: number;
  /** Longest sequence (the position table's length). */
  maxLen: number;
  /** Dropout on embeddings, attention weights and residual branches (default 0). */
  dropout?: number;
  /** Output head tied to the token embedding (default true). */
  tied?: boolean;
  positional?: 'learned' | 'sinusoidal';
  mlpRatio?: number;
  generator?: Generator;
}

/**
 * A GPT-style language model as an ordered list of layers, so that a pipeline can cut it anywhere:
 * token + position embedding, `layers` transformer blocks, a final LayerNorm, and an output head
 * (tied to the token embedding unless `tied` is false). Ids [batch, T] in, logits [batch, T, vocab] out.
 * Residual projections start scaled by 1/sqrt(2 layers), as GPT-2's.
 */
export function gpt(o: GPTOptions): Module[] {
  const emb = new TokenEmbedding(o.vocab, o.dim, o.maxLen, { positional: o.positional, dropout: o.dropout, generator: o.generator });
  const blocks = Array.from({ length: o.layers }, () => new TransformerBlock(o.dim, o.heads, { dropout: o.dropout, generator: o.generator, mlpRatio: o.mlpRatio }));
  const residualScale = 1 / Math.sqrt(2 * o.layers);
  for (const b of blocks) {
    for (const l of [b.attn.outProj, b.proj]) {
      const old = l.weight.data;
      l.weight.data = tf.keep(tf.mul(old, residualScale));
      old.dispose();
    }
  }
  const head = (o.tied ?? true) ? new TiedLinear(emb.tokens.weight) : new Linear(o.dim, o.vocab, { bias: false, generator: o.generator });
  return [emb, ...blocks, new LayerNorm(o.dim), head];
}
