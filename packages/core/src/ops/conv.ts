import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { record } from '../autograd.js';
import { kernelTraits } from '../backend.js';
import { addBias, biasGrad, mm } from './matmul.js';
import { ShapeError, fmtShape } from '../errors.js';
import type { Tensor } from '../tensor.js';
import { expectRank, oneHotF32 } from './util.js';

/** Padding of a convolution or pooling: 'valid', 'same', a number for all sides, or [top, bottom, left, right]. */
export type Padding = 'valid' | 'same' | number | [number, number, number, number];

/** Explicit [top, bottom, left, right] padding for one spatial window (TensorFlow's 'same' convention). */
export function explicitPadding(pad: Padding, h: number, w: number, kh: number, kw: number, sh: number, sw: number): [number, number, number, number] {
  if (pad === 'valid') return [0, 0, 0, 0];
  if (typeof pad === 'number') return [pad, pad, pad, pad];
  if (Array.isArray(pad)) return pad;
  const th = Math.max((Math.ceil(h / sh) - 1) * sh + kh - h, 0);
  const tw = Math.max((Math.ceil(w / sw) - 1) * sw + kw - w, 0);
  return [Math.floor(th / 2), th - Math.floor(th / 2), Math.floor(tw / 2), tw - Math.floor(tw / 2)];
}

/** Pads (positive) or crops (negative) the two spatial dimensions of an NHWC tensor. */
function padOrCrop(x: TF.Tensor, top: number, bottom: number, left: number, right: number): TF.Tensor {
  let t = x;
  if (top > 0 || bottom > 0 || left > 0 || right > 0) {
    t = tf.pad(t, [[0, 0], [Math.max(top, 0), Math.max(bottom, 0)], [Math.max(left, 0), Math.max(right, 0)], [0, 0]]);
  }
  if (top < 0 || bottom < 0 || left < 0 || right < 0) {
    const [n, h, w, c] = t.shape as number[];
    const t0 = Math.max(-top, 0), l0 = Math.max(-left, 0);
    t = tf.slice(t, [0, t0, l0, 0], [n!, h! - t0 - Math.max(-bottom, 0), w! - l0 - Math.max(-right, 0), c!]);
  }
  return t;
}

/** Inserts s-1 zeros between the spatial positions of an NHWC tensor (the gradient of a stride). */
function dilate(x: TF.Tensor, sh: number, sw: number): TF.Tensor {
  if (sh === 1 && sw === 1) return x;
  const [n, h, w, c] = x.shape as [number, number, number, number];
  const t = tf.pad(tf.reshape(x, [n, h, 1, w, 1, c]), [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]]);
  return tf.slice(tf.reshape(t, [n, h * sh, w * sw, c]), [0, 0, 0, 0], [n, (h - 1) * sh + 1, (w - 1) * sw + 1, c]);
}

/** A [kh, kw, ci, kh*kw*ci] filter that copies each window's elements to channels, in filter order. */
function patchFilter(kh: number, kw: number, ci: number): TF.Tensor4D {
  const cols = kh * kw * ci;
  return tf.tidy(() => tf.reshape(oneHotF32(tf.range(0, cols, 1, 'int32') as TF.Tensor1D, cols), [kh, kw, ci, cols]) as TF.Tensor4D);
}

/** Options of conv2d. */
export interface Conv2dOptions {
  stride?: number | [number, number];
  padding?: Padding;
}

/**
 * The two gradients of a convolution with TensorFlow's own backprop kernels. They take 'valid' or
 * 'same' padding; other padding runs as 'valid' over the explicitly padded input.
 */
function nativeConvGrads(dy: TF.Tensor, x: TF.Tensor, w: TF.Tensor, needs: boolean[], strides: [number, number], pads: [number, number, number, number], same: boolean) {
  const [pt, pb, pl, pr] = pads;
  const explicit = !same && pt + pb + pl + pr > 0;
  const mode = same ? 'same' : 'valid';
  const xp = explicit && needs[1] ? padOrCrop(x, pt, pb, pl, pr) : x;
  const inShape = explicit ? [x.shape[0]!, x.shape[1]! + pt + pb, x.shape[2]! + pl + pr, x.shape[3]!] : x.shape;
  let dx: TF.Tensor | null = null;
  if (needs[0]) {
    dx = tf.engine().runKernel('Conv2DBackpropInput', { dy, filter: w }, { strides, pad: mode, dataFormat: 'NHWC', inputShape: inShape } as never) as TF.Tensor;
    if (explicit) dx = padOrCrop(dx, -pt, -pb, -pl, -pr);
  }
  const dw = needs[1]
    ? (tf.engine().runKernel('Conv2DBackpropFilter', { x: xp, dy }, { strides, pad: mode, dataFormat: 'NHWC', filterShape: w.shape } as never) as TF.Tensor)
    : null;
  return { dx, dw };
}

/**
 * 2-D convolution over NHWC input with an HWIO filter [kh, kw, in, out] and optional bias.
 * Gradients: the backend's backprop kernels where they are fast (tensorflow); elsewhere both as
 * forward convolutions (the input gradient with the flipped filter over the dilated, padded output
 * gradient; the filter gradient as a correlation of input and output gradient): on wasm these run
 * 5-10x faster than conv2dTranspose, and Conv2DBackpropFilter does not exist there at all.
 */
export function conv2d(x: Tensor, w: Tensor, b?: Tensor | null, opts: Conv2dOptions = {}): Tensor {
  expectRank('conv2d', 'input', x, [4]);
  expectRank('conv2d', 'filter', w, [4]);
  const [, h, wd, ci] = x.shape as [number, number, number, number];
  const [kh, kw, wci, co] = w.shape as [number, number, number, number];
  if (wci !== ci) {
    throw new ShapeError(`conv2d: input of shape ${fmtShape(x.shape)} has ${ci} channels, filter ${fmtShape(w.shape)} expects ${wci}`);
  }
  if (b && (b.rank !== 1 || b.shape[0] !== co)) throw new ShapeError(`conv2d: bias of shape ${fmtShape(b.shape)}, expected [${co}]`);
  const [sh, sw] = typeof opts.stride === 'number' || opts.stride == null ? [opts.stride ?? 1, opts.stride ?? 1] : opts.stride;
  const [pt, pb, pl, pr] = explicitPadding(opts.padding ?? 'valid', h, wd, kh, kw, sh, sw);
  const oh = Math.floor((h + pt + pb - kh) / sh) + 1;
  const ow = Math.floor((wd + pl + pr - kw) / sw) + 1;
  if (oh <= 0 || ow <= 0) {
    throw new ShapeError(`conv2d: a ${kh}x${kw} filter does not fit input ${fmtShape(x.shape)} with padding [${[pt, pb, pl, pr]}]`);
  }
  const conv = { x: x.data as TF.Tensor4D, filter: w.data as TF.Tensor4D, strides: [sh, sw] as [number, number], pad: pt || pb || pl || pr ? ([[0, 0], [pt, pb], [pl, pr], [0, 0]] as [[0, 0], [number, number], [number, number], [0, 0]]) : ('valid' as const) };
  // tfjs-node's fused conv2d is Conv2D then a broadcast Add; BiasAdd is the faster second op.
  const y =
    b && kernelTraits().tensorflowOps ? tf.tidy(() => addBias(tf.conv2d(conv.x, conv.filter, conv.strides, conv.pad), b.data)) : tf.fused.conv2d({ ...conv, bias: b?.data });
  const inputs = b ? [x, w, b] : [x, w];
  const pads: [number, number, number, number] = [pt, pb, pl, pr];
  const same = opts.padding === 'same' || pads.every((p, i) => p === explicitPadding('same', h, wd, kh, kw, sh, sw)[i]);
  return record('conv2d', inputs, y, [x.data, w.data], (dy, [sx, sf], needs) => {
    const bias = needs[2] ? biasGrad(dy) : null;
    if (kernelTraits().nativeBackprop) {
      const { dx, dw } = nativeConvGrads(dy, sx!, sf!, needs, [sh, sw], pads, same);
      return [dx, dw, bias];
    }
    let dx: TF.Tensor | null = null;
    let dw: TF.Tensor | null = null;
    if (needs[0]) {
      const rh = h + pt + pb - kh - (oh - 1) * sh;
      const rw = wd + pl + pr - kw - (ow - 1) * sw;
      const g = padOrCrop(dilate(dy, sh, sw), kh - 1 - pt, kh - 1 - pb + rh, kw - 1 - pl, kw - 1 - pr + rw);
      const flipped = tf.transpose(tf.reverse(sf!, [0, 1]), [0, 1, 3, 2]);
      dx = tf.conv2d(g as TF.Tensor4D, flipped as TF.Tensor4D, 1, 'valid');
    }
    if (needs[1]) {
      // Only the rows and columns the windows touched.
      const xp = padOrCrop(sx!, pt, (oh - 1) * sh + kh - h - pt, pl, (ow - 1) * sw + kw - wd - pl);
      const cols = kh * kw * ci;
      if (cols <= co) {
        // Few input channels (a network's first layer): the windows' patches as columns, gathered by
        // a convolution with a one-hot filter, then one product with dy. The correlation below would
        // transpose all of dy and run a kernel as large as the image.
        const patches = tf.reshape(tf.conv2d(xp as TF.Tensor4D, patchFilter(kh, kw, ci), [sh, sw], 'valid'), [-1, cols]);
        dw = tf.reshape(mm(patches, tf.reshape(dy, [-1, co]), true, false), [kh, kw, ci, co]);
      } else {
        const xt = tf.transpose(xp, [3, 1, 2, 0]) as TF.Tensor4D; // [ci, Hp, Wp, n]
        const ft = tf.transpose(dy, [1, 2, 0, 3]) as TF.Tensor4D; // [oh, ow, n, co]
        const r = tf.conv2d(xt, ft, 1, 'valid', 'NHWC', [sh, sw]); // [ci, kh, kw, co]
        dw = tf.transpose(r, [1, 2, 0, 3]);
      }
    }
    return [dx, dw, bias];
  });
}
