// The benchmark's model and data: an MLP of `depth` hidden Linear+ReLU blocks of `width`.
import { Generator, Linear, ReLU, Sequential, randint, randn } from '@hpdl/core';

export function mlp({ width, depth, inputs = 256, classes = 10 }) {
  const layers = [new Linear(inputs, width), new ReLU()];
  for (let i = 0; i < depth; i++) layers.push(new Linear(width, width), new ReLU());
  layers.push(new Linear(width, classes));
  return new Sequential(...layers);
}

export function batch({ batch: n, inputs = 256, classes = 10 }, seed) {
  const g = new Generator(seed);
  return { input: randn([n, inputs], 1, 0, g), target: randint(classes, [n], g) };
}

/** FLOPs of one training step (forward 2 MACs, backward 4 MACs per weight and sample). */
export function stepFlops({ width, depth, batch: n, inputs = 256, classes = 10 }) {
  const macs = inputs * width + depth * width * width + width * classes;
  return 6 * macs * n;
}
