import { tf } from '../src/tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { describe, expect, it } from 'vitest';
import * as h from '../src/index.js';
import { Tensor } from '../src/index.js';
import { dropoutMask as h_dropoutMask } from '../src/ops/nn.js';
import { availableBackends, finiteDiff, maxRelErr, outputShape, oursWithGrads, randomValues, reference, type GradCase } from './helpers.js';

// A new array (tf.grads records the array it was given, so in-place reverse() confuses it).
const permute3 = <T>(a: T[]): T[] => [a[2]!, a[0]!, a[1]!];
const idx = (values: number[], shape: number[]) => new Tensor(tf.tensor(values, shape, 'int32'));

/**
 * Average pooling with 'same' padding built from ops whose gradients tf.grads gets right (its
 * AvgPoolGrad on cpu divides edge windows by the whole window): a sum over the zero-padded input,
 * divided by the number of input elements each window covers.
 */
function avgPoolSameRef(x: TF.Tensor, k: number, s: number): TF.Tensor {
  const pads = (n: number) => {
    const total = Math.max((Math.ceil(n / s) - 1) * s + k - n, 0);
    return [Math.floor(total / 2), total - Math.floor(total / 2)] as [number, number];
  };
  const p: [number, number][] = [[0, 0], pads(x.shape[1]!), pads(x.shape[2]!), [0, 0]];
  const sums = tf.avgPool(tf.pad(x, p) as TF.Tensor4D, k, s, 'valid');
  const counts = tf.avgPool(tf.pad(tf.onesLike(x), p) as TF.Tensor4D, k, s, 'valid');
  return tf.div(sums, counts);
}

/** Attention composed of tf ops: softmax(q k^T * scale + masks) (* dropout mask) v. */
function attentionRef(q: TF.Tensor, k: TF.Tensor, v: TF.Tensor, o: { causal?: boolean; pad?: number[][]; dropout?: { p: number; seed: number } } = {}): TF.Tensor {
  const [b, hh, tq, d] = q.shape as number[];
  const tk = k.shape[2]!;
  let s = tf.mul(tf.matMul(q, k, false, true), 1 / Math.sqrt(d!));
  if (o.causal) s = tf.add(s, tf.tensor(Array.from({ length: tq! * tk }, (_, i) => (i % tk > Math.floor(i / tk) ? -1e9 : 0)), [tq!, tk]));
  if (o.pad) s = tf.add(s, tf.reshape(tf.mul(tf.tensor(o.pad), -1e9), [b!, 1, 1, tk]));
  let pr = tf.softmax(s);
  if (o.dropout) pr = tf.mul(pr, tf.reshape(h_dropoutMask([b! * hh!, tq!, tk], o.dropout.p, o.dropout.seed), pr.shape));
  return tf.matMul(pr, v);
}
const pad = [[0, 0, 1], [0, 0, 0]];
const padMask = () => idx([0, 0, 1, 0, 0, 0], [2, 3]);
const dropSeed = new h.Generator(77).nextUint32();

// Every operation, against the same function written with TensorFlow.js ops and differentiated by tf.grads.
const cases: GradCase[] = [
  { name: 'add broadcast', shapes: [[3, 4], [4]], ours: h.add, ref: tf.add },
  { name: 'sub broadcast', shapes: [[2, 1, 4], [3, 1]], ours: h.sub, ref: tf.sub },
  { name: 'mul broadcast', shapes: [[3, 4], [3, 1]], ours: h.mul, ref: tf.mul },
  { name: 'div broadcast', shapes: [[3, 4], [4]], ours: h.div, ref: tf.div, awayFromZero: true },
  { name: 'maximum', shapes: [[3, 4], [3, 4]], ours: h.maximum, ref: tf.maximum, noFiniteDiff: true },
  { name: 'minimum', shapes: [[3, 4], [3, 4]], ours: h.minimum, ref: tf.minimum, noFiniteDiff: true },
  { name: 'add scalar', shapes: [[3, 4]], ours: (x) => h.add(x, 2), ref: (x) => tf.add(x, 2) },
  { name: 'neg', shapes: [[5]], ours: h.neg, ref: tf.neg },
  { name: 'exp', shapes: [[5]], ours: h.exp, ref: tf.exp },
  { name: 'log', shapes: [[5]], ours: h.log, ref: tf.log, positive: true },
  { name: 'sqrt', shapes: [[5]], ours: h.sqrt, ref: tf.sqrt, positive: true },
  { name: 'rsqrt', shapes: [[5]], ours: h.rsqrt, ref: tf.rsqrt, positive: true },
  { name: 'square', shapes: [[5]], ours: h.square, ref: tf.square },
  { name: 'abs', shapes: [[5]], ours: h.abs, ref: tf.abs, awayFromZero: true },
  { name: 'pow', shapes: [[5]], ours: (x) => h.pow(x, 3), ref: (x) => tf.pow(x, 3) },
  { name: 'scale', shapes: [[5]], ours: (x) => h.scale(x, -1.5), ref: (x) => tf.mul(x, -1.5) },
  { name: 'relu', shapes: [[4, 6]], ours: h.relu, ref: tf.relu, awayFromZero: true },
  { name: 'leakyRelu', shapes: [[4, 6]], ours: (x) => h.leakyRelu(x, 0.1), ref: (x) => tf.leakyRelu(x, 0.1), awayFromZero: true },
  { name: 'sigmoid', shapes: [[4, 6]], ours: h.sigmoid, ref: tf.sigmoid },
  { name: 'tanh', shapes: [[4, 6]], ours: h.tanh, ref: tf.tanh },
  {
    name: 'gelu',
    shapes: [[4, 6]],
    ours: h.gelu,
    ref: (x) => tf.mul(tf.mul(x, 0.5), tf.add(tf.erf(tf.mul(x, Math.SQRT1_2)), 1)),
  },
  { name: 'sum all', shapes: [[3, 4]], ours: (x) => h.sum(x), ref: (x) => tf.sum(x) },
  { name: 'sum axis keepDims', shapes: [[3, 4, 2]], ours: (x) => h.sum(x, [0, 2], true), ref: (x) => tf.sum(x, [0, 2], true) },
  { name: 'mean axis', shapes: [[3, 4]], ours: (x) => h.mean(x, -1), ref: (x) => tf.mean(x, -1) },
  { name: 'max axis', shapes: [[3, 5]], ours: (x) => h.max(x, 1), ref: (x) => tf.max(x, 1) },
  { name: 'reshape', shapes: [[3, 4]], ours: (x) => h.reshape(x, [2, -1]), ref: (x) => tf.reshape(x, [2, 6]) },
  { name: 'transpose', shapes: [[2, 3, 4]], ours: (x) => h.transpose(x, [2, 0, 1]), ref: (x) => tf.transpose(x, [2, 0, 1]) },
  { name: 'slice', shapes: [[4, 5]], ours: (x) => h.slice(x, [1, 2], [2, -1]), ref: (x) => tf.slice(x, [1, 2], [2, 3]) },
  { name: 'concat', shapes: [[2, 3], [2, 2]], ours: (a, b) => h.concat([a!, b!], 1), ref: (a, b) => tf.concat([a!, b!], 1) },
  { name: 'stack', shapes: [[2, 3], [2, 3]], ours: (a, b) => h.stack([a!, b!], 1), ref: (a, b) => tf.stack([a!, b!], 1) },
  {
    name: 'split (one output used)',
    shapes: [[4, 6]],
    ours: (x) => h.mul(h.split(x, [2, 4], 1)[1]!, 3),
    ref: (x) => tf.mul(tf.split(x, [2, 4], 1)[1]!, 3),
  },
  { name: 'unstack + stack', shapes: [[3, 4, 2]], ours: (x) => h.stack(permute3(h.unstack(x, 1)), 0), ref: (x) => tf.stack(permute3(tf.unstack(x, 1)), 0) },
  { name: 'pad', shapes: [[2, 3]], ours: (x) => h.pad(x, [[1, 0], [2, 1]]), ref: (x) => tf.pad(x, [[1, 0], [2, 1]]) },
  {
    name: 'gather (embedding)',
    shapes: [[5, 3]],
    ours: (x) => h.gather(x, idx([0, 4, 4, 2, 0, 1], [2, 3])),
    ref: (x) => tf.gather(x, tf.tensor([0, 4, 4, 2, 0, 1], [2, 3], 'int32')),
  },
  { name: 'matmul 2d', shapes: [[3, 4], [4, 5]], ours: h.matmul, ref: (a, b) => tf.matMul(a!, b!) },
  { name: 'matmul batched', shapes: [[2, 3, 4], [2, 4, 5]], ours: h.matmul, ref: (a, b) => tf.matMul(a!, b!) },
  { name: 'matmul batch-broadcast', shapes: [[2, 3, 4], [4, 5]], ours: h.matmul, ref: (a, b) => tf.matMul(a!, tf.broadcastTo(b!, [2, 4, 5])) },
  { name: 'linear', shapes: [[6, 4], [4, 3], [3]], ours: (x, w, b) => h.linear(x!, w!, b), ref: (x, w, b) => tf.add(tf.matMul(x!, w!), b!) },
  {
    name: 'linear transposed weight (tied head)',
    shapes: [[2, 3, 4], [6, 4], [6]],
    ours: (x, w, b) => h.linear(x!, w!, b, { transposed: true }),
    ref: (x, w, b) => tf.add(tf.reshape(tf.matMul(tf.reshape(x!, [6, 4]), tf.transpose(w!)), [2, 3, 6]), b!),
  },
  {
    name: 'linear 3d input',
    shapes: [[2, 3, 4], [4, 5], [5]],
    ours: (x, w, b) => h.linear(x!, w!, b),
    ref: (x, w, b) => tf.add(tf.reshape(tf.matMul(tf.reshape(x!, [6, 4]), w!), [2, 3, 5]), b!),
  },
  {
    name: 'conv2d same',
    shapes: [[2, 6, 6, 3], [3, 3, 3, 4], [4]],
    ours: (x, w, b) => h.conv2d(x!, w!, b, { padding: 'same' }),
    ref: (x, w, b) => tf.add(tf.conv2d(x as TF.Tensor4D, w as TF.Tensor4D, 1, 'same'), b!),
  },
  {
    name: 'conv2d valid stride 2',
    shapes: [[2, 7, 8, 2], [3, 2, 2, 3]],
    ours: (x, w) => h.conv2d(x!, w!, null, { stride: 2 }),
    ref: (x, w) => tf.conv2d(x as TF.Tensor4D, w as TF.Tensor4D, 2, 'valid'),
  },
  {
    name: 'conv2d same stride 2 (odd size)',
    shapes: [[1, 7, 7, 2], [3, 3, 2, 2]],
    ours: (x, w) => h.conv2d(x!, w!, null, { stride: 2, padding: 'same' }),
    ref: (x, w) => tf.conv2d(x as TF.Tensor4D, w as TF.Tensor4D, 2, 'same'),
  },
  {
    name: 'conv2d explicit padding',
    shapes: [[1, 5, 5, 2], [3, 3, 2, 2]],
    ours: (x, w) => h.conv2d(x!, w!, null, { padding: [2, 0, 1, 1] }),
    ref: (x, w) => tf.conv2d(x as TF.Tensor4D, w as TF.Tensor4D, 1, [[0, 0], [2, 0], [1, 1], [0, 0]]),
  },
  {
    name: 'conv2d explicit padding stride 2',
    shapes: [[2, 6, 7, 3], [3, 2, 3, 2], [2]],
    ours: (x, w, b) => h.conv2d(x!, w!, b, { stride: [2, 1], padding: [1, 2, 0, 1] }),
    ref: (x, w, b) => tf.add(tf.conv2d(x as TF.Tensor4D, w as TF.Tensor4D, [2, 1], [[0, 0], [1, 2], [0, 1], [0, 0]]), b!),
  },
  {
    name: 'conv2d 1x1 same stride 2 (even size)',
    shapes: [[2, 6, 6, 4], [1, 1, 4, 3]],
    ours: (x, w) => h.conv2d(x!, w!, null, { stride: 2, padding: 'same' }),
    ref: (x, w) => tf.conv2d(x as TF.Tensor4D, w as TF.Tensor4D, 2, 'same'),
  },
  {
    name: 'conv2d input constant (first layer)',
    shapes: [[2, 5, 5, 1], [3, 3, 1, 4], [4]],
    constant: [0],
    ours: (x, w, b) => h.conv2d(x!, w!, b, { padding: 'same' }),
    ref: (x, w, b) => tf.add(tf.conv2d(x as TF.Tensor4D, w as TF.Tensor4D, 1, 'same'), b!),
  },
  {
    name: 'conv2d few input channels (patches), same stride 2',
    shapes: [[2, 7, 7, 1], [3, 3, 1, 12], [12]],
    constant: [0],
    ours: (x, w, b) => h.conv2d(x!, w!, b, { stride: 2, padding: 'same' }),
    ref: (x, w, b) => tf.add(tf.conv2d(x as TF.Tensor4D, w as TF.Tensor4D, 2, 'same'), b!),
  },
  {
    name: 'conv2d few input channels (patches), explicit padding',
    shapes: [[2, 6, 5, 2], [2, 2, 2, 8]],
    ours: (x, w) => h.conv2d(x!, w!, null, { padding: [1, 0, 2, 1] }),
    ref: (x, w) => tf.conv2d(x as TF.Tensor4D, w as TF.Tensor4D, 1, [[0, 0], [1, 0], [2, 1], [0, 0]]),
  },
  { name: 'maxPool2d', shapes: [[2, 4, 6, 3]], ours: (x) => h.maxPool2d(x, 2), ref: (x) => tf.maxPool(x as TF.Tensor4D, 2, 2, 'valid'), noFiniteDiff: true },
  {
    name: 'maxPool2d overlapping same',
    shapes: [[1, 5, 5, 2]],
    ours: (x) => h.maxPool2d(x, 3, 2, 'same'),
    ref: (x) => tf.maxPool(x as TF.Tensor4D, 3, 2, 'same'),
    noFiniteDiff: true,
  },
  {
    name: 'maxPool2d with ties (after relu)',
    shapes: [[2, 4, 6, 3]],
    ours: (x) => h.maxPool2d(h.relu(x), 2),
    ref: (x) => tf.maxPool(tf.relu(x) as TF.Tensor4D, 2, 2, 'valid'),
    noFiniteDiff: true,
  },
  {
    name: 'maxPool2d odd size with ties',
    shapes: [[2, 5, 7, 2]],
    ours: (x) => h.maxPool2d(h.relu(x), 2),
    ref: (x) => tf.maxPool(tf.relu(x) as TF.Tensor4D, 2, 2, 'valid'),
    noFiniteDiff: true,
  },
  {
    name: 'maxPool2d overlapping with ties',
    shapes: [[1, 6, 6, 2]],
    ours: (x) => h.maxPool2d(h.relu(x), 3, 2, 'same'),
    ref: (x) => tf.maxPool(tf.relu(x) as TF.Tensor4D, 3, 2, 'same'),
    noFiniteDiff: true,
  },
  { name: 'avgPool2d', shapes: [[2, 4, 6, 3]], ours: (x) => h.avgPool2d(x, 2), ref: (x) => tf.avgPool(x as TF.Tensor4D, 2, 2, 'valid') },
  // Odd sizes with 'same' padding: windows at the edge average fewer elements.
  { name: 'avgPool2d same odd 9x9', shapes: [[2, 9, 9, 2]], ours: (x) => h.avgPool2d(x, 2, 2, 'same'), ref: (x) => avgPoolSameRef(x, 2, 2) },
  { name: 'avgPool2d same odd 5x7', shapes: [[1, 5, 7, 3]], ours: (x) => h.avgPool2d(x, 2, 2, 'same'), ref: (x) => avgPoolSameRef(x, 2, 2) },
  { name: 'avgPool2d overlapping same', shapes: [[1, 6, 5, 2]], ours: (x) => h.avgPool2d(x, 3, 2, 'same'), ref: (x) => avgPoolSameRef(x, 3, 2) },
  { name: 'avgPool2d valid odd', shapes: [[1, 7, 5, 2]], ours: (x) => h.avgPool2d(x, [3, 2], [2, 1]), ref: (x) => tf.avgPool(x as TF.Tensor4D, [3, 2], [2, 1], 'valid') },
  { name: 'attention', shapes: [[2, 3, 4, 5], [2, 3, 6, 5], [2, 3, 6, 2]], ours: (q, k, v) => h.scaledDotProductAttention(q!, k!, v!), ref: (q, k, v) => attentionRef(q!, k!, v!) },
  { name: 'attention causal', shapes: [[2, 2, 5, 3], [2, 2, 5, 3], [2, 2, 5, 3]], ours: (q, k, v) => h.scaledDotProductAttention(q!, k!, v!, { causal: true }), ref: (q, k, v) => attentionRef(q!, k!, v!, { causal: true }) },
  { name: 'attention T = 1, one head', shapes: [[3, 1, 1, 4], [3, 1, 1, 4], [3, 1, 1, 4]], ours: (q, k, v) => h.scaledDotProductAttention(q!, k!, v!, { causal: true }), ref: (q, k, v) => attentionRef(q!, k!, v!, { causal: true }) },
  {
    name: 'attention causal, key padding, 4 heads',
    shapes: [[2, 4, 3, 2], [2, 4, 3, 2], [2, 4, 3, 2]],
    ours: (q, k, v) => h.scaledDotProductAttention(q!, k!, v!, { causal: true, keyPaddingMask: padMask() }),
    ref: (q, k, v) => attentionRef(q!, k!, v!, { causal: true, pad }),
  },
  {
    name: 'attention dropout',
    shapes: [[2, 2, 4, 3], [2, 2, 4, 3], [2, 2, 4, 3]],
    ours: (q, k, v) => h.scaledDotProductAttention(q!, k!, v!, { dropout: 0.3, generator: new h.Generator(77) }),
    ref: (q, k, v) => attentionRef(q!, k!, v!, { dropout: { p: 0.3, seed: dropSeed } }),
  },
  { name: 'softmax', shapes: [[3, 5]], ours: (x) => h.softmax(x), ref: (x) => tf.softmax(x) },
  {
    name: 'logSoftmax',
    shapes: [[3, 5]],
    ours: (x) => h.logSoftmax(x),
    ref: (x) => tf.sub(x, tf.logSumExp(x, -1, true)),
  },
  {
    name: 'crossEntropy mean',
    shapes: [[4, 5]],
    ours: (x) => h.crossEntropy(x, idx([0, 3, 4, 1], [4])),
    ref: (x) => tf.mean(tf.neg(tf.sum(tf.mul(tf.sub(x, tf.logSumExp(x, -1, true)), tf.oneHot(tf.tensor1d([0, 3, 4, 1], 'int32'), 5)), -1))),
  },
  {
    name: 'crossEntropy none 3d',
    shapes: [[2, 2, 3]],
    ours: (x) => h.crossEntropy(x, idx([0, 2, 1, 1], [2, 2]), 'none'),
    ref: (x) => tf.neg(tf.sum(tf.mul(tf.sub(x, tf.logSumExp(x, -1, true)), tf.oneHot(tf.tensor([0, 2, 1, 1], [2, 2], 'int32'), 3)), -1)),
  },
  { name: 'mseLoss', shapes: [[3, 4], [3, 4]], ours: (a, b) => h.mseLoss(a!, b!), ref: (a, b) => tf.mean(tf.square(tf.sub(a!, b!))) },
  {
    name: 'layerNorm',
    shapes: [[3, 6], [6], [6]],
    ours: (x, w, b) => h.layerNorm(x!, w, b),
    ref: (x, w, b) => {
      const m = tf.moments(x!, -1, true);
      return tf.add(tf.mul(tf.div(tf.sub(x!, m.mean), tf.sqrt(tf.add(m.variance, 1e-5))), w!), b!);
    },
  },
  {
    name: 'batchNorm (training)',
    shapes: [[4, 3, 3, 2], [2], [2]],
    ours: (x, w, b) => h.batchNorm(x!, { runningMean: tf.keep(tf.zeros([2])), runningVar: tf.keep(tf.ones([2])) }, w!, b!, true),
    ref: (x, w, b) => {
      const m = tf.moments(x!, [0, 1, 2]);
      return tf.add(tf.mul(tf.div(tf.sub(x!, m.mean), tf.sqrt(tf.add(m.variance, 1e-5))), w!), b!);
    },
  },
];

const backends = await availableBackends();

describe.each(backends)('operations on %s', (backend) => {
  it.each(cases.map((c) => [c.name, c] as const))('%s: values and gradients match tf.grads and finite differences', async (_n, c) => {
    await h.initBackend(backend);
    const gen = new h.Generator(cases.indexOf(c) + 1);
    const inputs = c.shapes.map((s) => randomValues(s, gen, c));
    const weights = randomValues(outputShape(c, inputs), gen);
    const ours = oursWithGrads(c, inputs, weights);
    const ref = await reference(c, inputs, weights, ours.outShape);
    expect(maxRelErr(ours.values, ref.values)).toBeLessThan(1e-5);
    c.shapes.forEach((_, i) => {
      if (c.constant?.includes(i)) return;
      expect(ours.grads[i], `gradient of input ${i}`).not.toBeNull();
      expect(maxRelErr(ours.grads[i]!, ref.grads[i]!), `input ${i} vs tf.grads`).toBeLessThan(1e-4);
      if (!c.noFiniteDiff && backend === backends[0]) {
        const n = inputs[i]!.length;
        const coords = [0, Math.floor(n / 2), n - 1];
        const fd = finiteDiff(c, inputs, weights, i, coords);
        const got = coords.map((j) => ours.grads[i]![j]!);
        expect(maxRelErr(got, fd), `input ${i} vs finite differences`).toBeLessThan(2e-2);
      }
    });
  });
});
