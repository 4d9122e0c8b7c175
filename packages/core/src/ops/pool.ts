import * as tf from '@tensorflow/tfjs-core';
import { record } from '../autograd.js';
import type { Tensor } from '../tensor.js';
import type { Padding } from './conv.js';
import { expectRank } from './util.js';

type Pad = 'valid' | 'same' | number | [[0, 0], [number, number], [number, number], [0, 0]];

function poolArgs(kernel: number | [number, number], stride: number | [number, number] | undefined, padding: Padding) {
  const k: [number, number] = typeof kernel === 'number' ? [kernel, kernel] : kernel;
  const s: [number, number] = stride == null ? k : typeof stride === 'number' ? [stride, stride] : stride;
  const pad: Pad = Array.isArray(padding) ? [[0, 0], [padding[0], padding[1]], [padding[2], padding[3]], [0, 0]] : padding;
  return { k, s, pad };
}

/** 2-D max pooling over NHWC input; stride defaults to the kernel size. */
export function maxPool2d(x: Tensor, kernel: number | [number, number], stride?: number | [number, number], padding: Padding = 'valid'): Tensor {
  expectRank('maxPool2d', 'input', x, [4]);
  const { k, s, pad } = poolArgs(kernel, stride, padding);
  const y = tf.maxPool(x.data as tf.Tensor4D, k, s, pad as 'valid');
  return record('maxPool2d', [x], y, [x.data, y], (dy, [sx, sy]) => [
    tf.engine().runKernel('MaxPoolGrad', { dy, input: sx!, output: sy! }, { filterSize: k, strides: s, pad } as never) as tf.Tensor,
  ]);
}

/** 2-D average pooling over NHWC input; stride defaults to the kernel size. */
export function avgPool2d(x: Tensor, kernel: number | [number, number], stride?: number | [number, number], padding: Padding = 'valid'): Tensor {
  expectRank('avgPool2d', 'input', x, [4]);
  const { k, s, pad } = poolArgs(kernel, stride, padding);
  const y = tf.avgPool(x.data as tf.Tensor4D, k, s, pad as 'valid');
  return record('avgPool2d', [x], y, [x.data], (dy, [sx]) => [
    tf.engine().runKernel('AvgPoolGrad', { dy, input: sx! }, { filterSize: k, strides: s, pad } as never) as tf.Tensor,
  ]);
}
