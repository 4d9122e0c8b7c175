import { tf } from '../src/tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as h from '../src/index.js';

beforeAll(async () => {
  await h.initBackend();
});

const dir = mkdtempSync(join(tmpdir(), 'hpdl-train-'));

/** 8x8 images with a bright 3x3 patch in one of four quadrants; the class is the quadrant. */
function quadrants(n: number, gen: h.Generator): { x: h.Tensor; y: h.Tensor } {
  const x = new Float32Array(n * 64);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    const q = gen.int(4);
    y[i] = q;
    const r0 = (q >> 1) * 4 + gen.int(2), c0 = (q & 1) * 4 + gen.int(2);
    for (let k = 0; k < 64; k++) x[i * 64 + k] = 0.3 * gen.normal();
    for (let r = 0; r < 3; r++) for (let c = 0; c < 3; c++) x[i * 64 + (r0 + r) * 8 + c0 + c] += 2;
  }
  return { x: h.fromTf(tf.tensor(x, [n, 8, 8, 1])), y: h.fromTf(tf.tensor(y, [n], 'int32')) };
}

function cnn() {
  return new h.Sequential(
    new h.Conv2d(1, 8, 3, { padding: 'same' }),
    new h.BatchNorm(8),
    new h.ReLU(),
    new h.MaxPool2d(2),
    new h.Conv2d(8, 8, 3, { padding: 'same' }),
    new h.ReLU(),
    new h.AvgPool2d(2),
    new h.Flatten(),
    new h.Dropout(0.1),
    new h.Linear(32, 4),
  );
}

class CharModel extends h.Module {
  embed = new h.Embedding(5, 8);
  lstm = new h.LSTM(8, 16);
  norm = new h.LayerNorm(16);
  head = new h.Linear(16, 5);
  forward(idx: h.Tensor): h.Tensor {
    return this.head.forward(h.gelu(this.norm.forward(this.lstm.forward(this.embed.forward(idx)))));
  }
}

/** Sequences over 'abcde' where each symbol is followed by the next (mod 5): [B, T] inputs and next-symbol targets. */
function cycles(b: number, t: number, gen: h.Generator) {
  const x = new Int32Array(b * t);
  const y = new Int32Array(b * t);
  for (let i = 0; i < b; i++) {
    let s = gen.int(5);
    for (let j = 0; j < t; j++) {
      x[i * t + j] = s;
      s = (s + 1) % 5;
      y[i * t + j] = s;
    }
  }
  return { x: h.fromTf(tf.tensor(x, [b, t], 'int32')), y: h.fromTf(tf.tensor(y, [b, t], 'int32')) };
}

function accuracy(logits: h.Tensor, y: h.Tensor): number {
  const pred = tf.tidy(() => tf.argMax(logits.data, -1));
  const p = pred.dataSync();
  const t = y.dataSync();
  pred.dispose();
  let ok = 0;
  for (let i = 0; i < t.length; i++) if (p[i] === t[i]) ok++;
  return ok / t.length;
}

describe('training end to end', () => {
  it('trains a CNN for 200 steps without growing the number of live tensors, then saves and reloads it', () => {
    h.manualSeed(1);
    const model = cnn();
    const opt = new h.SGD(model.parameters(), { lr: 0.05, momentum: 0.9, nesterov: true, weightDecay: 1e-4 });
    const sched = new h.LRScheduler(opt, h.linearWarmup(10, h.cosine(190, 0.1)));
    const gen = new h.Generator(2);
    const test = quadrants(128, new h.Generator(99));
    let first = 0;
    let last = 0;
    let liveAfterFirst = 0;
    for (let step = 0; step < 200; step++) {
      const batch = quadrants(32, gen);
      const loss = h.tidy(() => {
        opt.zeroGrad();
        const l = h.crossEntropy(model.forward(batch.x), batch.y);
        l.backward();
        h.clipGradNorm(model.parameters(), 5);
        opt.step();
        sched.step();
        return l.item();
      });
      batch.x.dispose();
      batch.y.dispose();
      if (step === 0) {
        first = loss;
        liveAfterFirst = h.liveTensors();
      }
      last = loss;
    }
    expect(h.liveTensors()).toBe(liveAfterFirst);
    expect(last).toBeLessThan(first / 4);
    model.eval();
    const logits = h.noGrad(() => model.forward(test.x));
    expect(accuracy(logits, test.y)).toBeGreaterThan(0.95);

    const path = join(dir, 'cnn.safetensors');
    h.saveCheckpoint(path, { model, optimizer: opt });
    h.manualSeed(123);
    const again = cnn().eval();
    h.loadCheckpoint(path, { model: again, optimizer: new h.SGD(again.parameters(), { lr: 1, momentum: 0.9, nesterov: true }) });
    const logits2 = h.noGrad(() => again.forward(test.x));
    expect(Array.from(logits2.dataSync())).toEqual(Array.from(logits.dataSync()));
  });

  it('trains an embedding + LSTM model for 200 steps without growing the number of live tensors', () => {
    h.manualSeed(3);
    const model = new CharModel();
    const opt = new h.AdamW(model.parameters(), { lr: 0.01 });
    const gen = new h.Generator(4);
    let first = 0;
    let last = 0;
    let live = 0;
    for (let step = 0; step < 200; step++) {
      const { x, y } = cycles(8, 3 + (step % 5), gen); // varying sequence length
      last = h.tidy(() => {
        opt.zeroGrad();
        const l = h.crossEntropy(model.forward(x), y);
        l.backward();
        opt.step();
        return l.item();
      });
      x.dispose();
      y.dispose();
      if (step === 0) {
        first = last;
        live = h.liveTensors();
      }
    }
    expect(h.liveTensors()).toBe(live);
    expect(last).toBeLessThan(first / 5);

    const path = join(dir, 'lstm.safetensors');
    h.saveCheckpoint(path, { model });
    const again = new CharModel();
    h.loadCheckpoint(path, { model: again });
    const { x } = cycles(2, 6, new h.Generator(5));
    const a = h.noGrad(() => model.forward(x)).dataSync();
    const b = h.noGrad(() => again.forward(x)).dataSync();
    expect(Array.from(b)).toEqual(Array.from(a));
  });
});
