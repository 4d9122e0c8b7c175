import { tf } from '../tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { record } from '../autograd.js';
import { kernelTraits } from '../backend.js';
import type { Tensor } from '../tensor.js';
import { explicitPadding, type Padding } from './conv.js';
import { expectRank } from './util.js';

type Pad = 'valid' | 'same' | number | [[0, 0], [number, number], [number, number], [0, 0]];

function poolArgs(kernel: number | [number, number], stride: number | [number, number] | undefined, padding: Padding) {
  const k: [number, number] = typeof kernel === 'number' ? [kernel, kernel] : kernel;
  const s: [number, number] = stride == null ? k : typeof stride === 'number' ? [stride, stride] : stride;
  const pad: Pad = Array.isArray(padding) ? [[0, 0], [padding[0], padding[1]], [padding[2], padding[3]], [0, 0]] : padding;
  return { k, s, pad };
}

/**
 * Gradient of max pooling from primitives: for each offset in the window, the position holding
 * the maximum (the first one, in row-major window order, as the reference kernel) receives dy.
 * Used on wasm, whose MaxPoolGrad kernel loses the gradient of windows whose maximum is negative
 * (tfjs-backend-wasm 4.22).
 */
function maxPoolGradComposed(dy: TF.Tensor, x: TF.Tensor, y: TF.Tensor, k: [number, number], s: [number, number], padding: Padding): TF.Tensor {
  const [n, h, w, c] = x.shape as [number, number, number, number];
  const [, oh, ow] = y.shape as [number, number, number, number];
  const [kh, kw] = k;
  const [sh, sw] = s;
  const [pt, pb, pl, pr] = explicitPadding(padding, h, w, kh, kw, sh, sw);
  if (kh === sh && kw === sw && pt + pb + pl + pr === 0) {
    // Non-overlapping windows: move each window's elements to a last axis, where argMax picks the
    // first maximum, and route dy there with a one-hot mask. (Measured on wasm, [64,28,28,32] 2x2:
    // 35 ms, against 260 ms for masks built offset by offset.)
    const th = oh * kh, tw = ow * kw; // rows and columns the windows cover
    const xc = th === h && tw === w ? x : tf.slice(x, [0, 0, 0, 0], [n, th, tw, c]);
    const win = tf.reshape(tf.transpose(tf.reshape(xc, [n, oh, kh, ow, kw, c]), [0, 1, 3, 5, 2, 4]), [n, oh, ow, c, kh * kw]);
    const first = tf.cast(tf.oneHot(tf.argMax(win, -1), kh * kw), 'float32');
    const g = tf.mul(first, tf.reshape(dy, [n, oh, ow, c, 1]));
    const dx = tf.reshape(tf.transpose(tf.reshape(g, [n, oh, ow, c, kh, kw]), [0, 1, 4, 2, 5, 3]), [n, th, tw, c]);
    return th === h && tw === w ? dx : tf.pad(dx, [[0, 0], [0, h - th], [0, w - tw], [0, 0]]);
  }
  const hp = h + pt + pb, wp = w + pl + pr;
  const xp = tf.pad(x, [[0, 0], [pt, pb], [pl, pr], [0, 0]], -3.4e38);
  let taken: TF.Tensor = tf.zerosLike(y);
  let dxp: TF.Tensor = tf.zeros([n, hp, wp, c]);
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const cand = tf.stridedSlice(xp, [0, i, j, 0], [n, i + (oh - 1) * sh + 1, j + (ow - 1) * sw + 1, c], [1, sh, sw, 1]);
      const hit = tf.mul(tf.cast(tf.equal(cand, y), 'float32'), tf.sub(1, taken));
      taken = tf.add(taken, hit);
      // Place dy*hit back at rows i + a*sh, columns j + b*sw: dilate by the stride, then pad.
      let g = tf.mul(dy, hit);
      g = tf.pad(tf.reshape(g, [n, oh, 1, ow, 1, c]), [[0, 0], [0, 0], [0, sh - 1], [0, 0], [0, sw - 1], [0, 0]]);
      g = tf.slice(tf.reshape(g, [n, oh * sh, ow * sw, c]), [0, 0, 0, 0], [n, (oh - 1) * sh + 1, (ow - 1) * sw + 1, c]);
      g = tf.pad(g, [[0, 0], [i, hp - i - ((oh - 1) * sh + 1)], [j, wp - j - ((ow - 1) * sw + 1)], [0, 0]]);
      dxp = tf.add(dxp, g);
    }
  }
  return tf.slice(dxp, [0, pt, pl, 0], [n, h, w, c]);
}

/** 2-D max pooling over NHWC input; stride defaults to the kernel size. */
export function maxPool2d(x: Tensor, kernel: number | [number, number], stride?: number | [number, number], padding: Padding = 'valid'): Tensor {
  expectRank('maxPool2d', 'input', x, [4]);
  const { k, s, pad } = poolArgs(kernel, stride, padding);
  const y = tf.maxPool(x.data as TF.Tensor4D, k, s, pad as 'valid');
  return record('maxPool2d', [x], y, [x.data, y], (dy, [sx, sy]) => [
    kernelTraits().nativeBackprop
      ? (tf.engine().runKernel('MaxPoolGrad', { dy, input: sx!, output: sy! }, { filterSize: k, strides: s, pad } as never) as TF.Tensor)
      : maxPoolGradComposed(dy, sx!, sy!, k, s, padding),
  ]);
}

/**
 * How many input elements each output window of a padded average pool covers, as [1, oh, ow, 1]
 * (windows at a padded edge average fewer elements).
 */
function windowCounts(h: number, w: number, k: [number, number], s: [number, number], pads: [number, number, number, number], oh: number, ow: number): TF.Tensor {
  const [pt, , pl] = pads;
  const span = (start: number, size: number, limit: number) => Math.min(start + size, limit) - Math.max(start, 0);
  const counts = new Float32Array(oh * ow);
  for (let i = 0; i < oh; i++) {
    const rows = span(i * s[0] - pt, k[0], h);
    for (let j = 0; j < ow; j++) counts[i * ow + j] = rows * span(j * s[1] - pl, k[1], w);
  }
  return tf.tensor4d(counts, [1, oh, ow, 1]);
}

/**
 * 2-D average pooling over NHWC input; stride defaults to the kernel size. With padding, edge
 * windows average only the elements they cover (TensorFlow's convention). Gradient: the backend's
 * AvgPoolGrad; the cpu and wasm kernels (4.22) divide by the whole window even where it overlaps the
 * padding, so there the output gradient is first scaled by window size / elements covered.
 */
export function avgPool2d(x: Tensor, kernel: number | [number, number], stride?: number | [number, number], padding: Padding = 'valid'): Tensor {
  expectRank('avgPool2d', 'input', x, [4]);
  const { k, s, pad } = poolArgs(kernel, stride, padding);
  const xShape = x.shape as [number, number, number, number];
  const pads = explicitPadding(padding, xShape[1], xShape[2], k[0], k[1], s[0], s[1]);
  const y = tf.avgPool(x.data as TF.Tensor4D, k, s, pad as 'valid');
  const [, oh, ow] = y.shape as [number, number, number, number];
  // Only the input's shape is needed: nothing is saved.
  return record('avgPool2d', [x], y, [], (dy) => {
    let g = dy;
    if (!kernelTraits().nativeBackprop && pads.some((p) => p > 0)) {
      g = tf.div(tf.mul(dy, k[0] * k[1]), windowCounts(xShape[1], xShape[2], k, s, pads, oh, ow));
    }
    const input = tf.zeros(xShape);
    return [tf.engine().runKernel('AvgPoolGrad', { dy: g, input }, { filterSize: k, strides: s, pad } as never) as TF.Tensor];
  });
}
