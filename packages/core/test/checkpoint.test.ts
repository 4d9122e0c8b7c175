import { tf } from '../src/tf.js';
import type * as TF from '@tensorflow/tfjs-core';
import { mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import * as h from '../src/index.js';
import { CheckpointError } from '../src/index.js';

beforeAll(async () => {
  await h.initBackend();
});

const dir = mkdtempSync(join(tmpdir(), 'hpdl-ckpt-'));

function model(seed: number) {
  h.manualSeed(seed);
  return new h.Sequential(new h.Conv2d(1, 2, 3), new h.BatchNorm(2), new h.ReLU(), new h.Flatten(), new h.Linear(2 * 2 * 2, 3));
}

function trainSteps(m: h.Module, opt: h.Optimizer, n: number) {
  const x = h.randn([4, 4, 4, 1], 1, 0, new h.Generator(5));
  const y = h.tensor([0, 1, 2, 1], [4], 'int32');
  for (let i = 0; i < n; i++) {
    h.tidy(() => {
      opt.zeroGrad();
      h.crossEntropy(m.forward(x), y).backward();
      opt.step();
    });
  }
}

const values = (m: h.Module) => [...m.stateDict()].map(([k, t]) => [k, Array.from(t.dataSync())]);

describe('checkpoints', () => {
  it('restores model, buffers and optimizer so that training continues identically', () => {
    const a = model(1);
    const optA = new h.Adam(a.parameters(), { lr: 0.01 });
    trainSteps(a, optA, 3);
    const path = join(dir, 'a.safetensors');
    h.saveCheckpoint(path, { model: a, optimizer: optA, extra: { epoch: 3 } });

    const b = model(2);
    const optB = new h.Adam(b.parameters(), { lr: 0.5 });
    expect(h.loadCheckpoint(path, { model: b, optimizer: optB })).toEqual({ epoch: 3 });
    expect(values(b)).toEqual(values(a));
    expect(optB.lr).toBe(0.01);
    trainSteps(a, optA, 2);
    trainSteps(b, optB, 2);
    expect(values(b)).toEqual(values(a));
  });

  it('restores a learning-rate scheduler with its optimizer: the resumed rates are the uninterrupted ones', () => {
    const a = model(1);
    const optA = new h.Adam(a.parameters(), { lr: 0.02 });
    const schedA = new h.LRScheduler(optA, h.cosine(10, 0.1));
    const rates: number[] = [];
    for (let i = 0; i < 4; i++) {
      trainSteps(a, optA, 1);
      rates.push(schedA.step());
    }
    const path = join(dir, 'sched.safetensors');
    h.saveCheckpoint(path, { model: a, optimizer: optA, scheduler: schedA });

    const b = model(2);
    const optB = new h.Adam(b.parameters(), { lr: 0.5 });
    const schedB = new h.LRScheduler(optB, h.cosine(10, 0.1));
    h.loadCheckpoint(path, { model: b, optimizer: optB, scheduler: schedB });
    expect(schedB.stepCount).toBe(4);
    expect(schedB.baseLr).toBe(0.02);
    expect(optB.lr).toBe(optA.lr);
    for (let i = 0; i < 3; i++) {
      trainSteps(a, optA, 1);
      trainSteps(b, optB, 1);
      expect(schedB.step()).toBe(schedA.step());
    }
    expect(values(b)).toEqual(values(a));

    // A checkpoint without scheduler state is refused before anything changes.
    const plain = join(dir, 'no-sched.safetensors');
    h.saveCheckpoint(plain, { model: a, optimizer: optA });
    const c = model(3);
    const before = values(c);
    const optC = new h.Adam(c.parameters());
    expect(() => h.loadCheckpoint(plain, { model: c, optimizer: optC, scheduler: new h.LRScheduler(optC, h.cosine(10)) })).toThrow(/holds no learning-rate scheduler state/);
    expect(values(c)).toEqual(before);
  });

  it('writes a file other safetensors readers understand: header, names, dtypes, offsets', () => {
    const m = model(1);
    const path = join(dir, 'plain.safetensors');
    h.saveCheckpoint(path, { model: m });
    const buf = readFileSync(path);
    const n = Number(buf.readBigUInt64LE(0));
    expect(n % 8).toBe(0);
    const header = JSON.parse(buf.subarray(8, 8 + n).toString());
    expect(header['0.weight']).toEqual({ dtype: 'F32', shape: [3, 3, 1, 2], data_offsets: expect.any(Array) });
    expect(header.__metadata__.format).toBe('hpdl-checkpoint-1');
    const [s, e] = header['4.bias'].data_offsets;
    const bias = new Float32Array(buf.buffer.slice(buf.byteOffset + 8 + n + s, buf.byteOffset + 8 + n + e));
    expect(Array.from(bias)).toEqual(Array.from(m.stateDict().get('4.bias')!.dataSync()));
  });

  it('rejects a truncated file, a foreign file and a corrupt header, leaving the model untouched', () => {
    const m = model(1);
    const path = join(dir, 't.safetensors');
    h.saveCheckpoint(path, { model: m });
    const full = readFileSync(path);
    const target = model(3);
    const before = values(target);
    const cases: [string, Buffer, RegExp][] = [
      ['truncated', full.subarray(0, full.length - 10), /outside the .*data section: truncated/],
      ['tiny', full.subarray(0, 5), /too short/],
      ['foreign', Buffer.from('PK\x03\x04 this is a zip file, not a checkpoint at all....'), /exceeds the file|not valid JSON/],
      ['bad json', Buffer.concat([Buffer.from([8, 0, 0, 0, 0, 0, 0, 0]), Buffer.from('{"a":  x')]), /not valid JSON/],
    ];
    for (const [name, bytes, msg] of cases) {
      const p = join(dir, `${name}.safetensors`);
      writeFileSync(p, bytes);
      expect(() => h.loadCheckpoint(p, { model: target }), name).toThrow(msg);
    }
    expect(values(target)).toEqual(before);
  });

  it('names what differs when a checkpoint does not match the model, and changes nothing', () => {
    const path = join(dir, 'm.safetensors');
    h.saveCheckpoint(path, { model: model(1) });
    h.manualSeed(1);
    const other = new h.Sequential(new h.Conv2d(1, 2, 3), new h.BatchNorm(2), new h.ReLU(), new h.Flatten(), new h.Linear(8, 4));
    const before = values(other);
    expect(() => h.loadCheckpoint(path, { model: other })).toThrow("'4.weight' has shape [8,3] in the source, [8,4] in the model");
    expect(values(other)).toEqual(before);
    const fewer = new h.Sequential(new h.Conv2d(1, 2, 3));
    expect(() => h.loadCheckpoint(path, { model: fewer })).toThrow(/unexpected '1.runningMean'/);
    expect(() => h.loadCheckpoint(path, { model: model(1), optimizer: new h.SGD(model(1).parameters(), { lr: 1 }) })).toThrow(/holds no optimizer state/);
    // Optimizer state that does not fit: the model is left as it was too.
    const withOpt = join(dir, 'opt.safetensors');
    const src = model(1);
    const srcOpt = new h.Adam(src.parameters());
    trainSteps(src, srcOpt, 1);
    h.saveCheckpoint(withOpt, { model: src, optimizer: srcOpt });
    const dst = model(4);
    const dstBefore = values(dst);
    expect(() => h.loadCheckpoint(withOpt, { model: dst, optimizer: new h.SGD(dst.parameters(), { lr: 1 }) })).toThrow(/holds Adam state, the optimizer is SGD/);
    const partial = new h.Adam(dst.parameters().slice(0, 1)); // fits the model, not the saved state
    expect(() => h.loadCheckpoint(withOpt, { model: dst, optimizer: partial })).toThrow(/entries for no parameter/);
    expect(values(dst)).toEqual(dstBefore);
    expect(() => h.loadCheckpoint(join(dir, 'missing.safetensors'), { model: fewer })).toThrow(CheckpointError);
  });

  it('never destroys the previous checkpoint when a save fails, and leaves no temporary file', () => {
    const path = join(dir, 'keep.safetensors');
    const m = model(1);
    h.saveCheckpoint(path, { model: m });
    const good = readFileSync(path);
    const broken = model(2);
    broken.parameters()[0]!.data.dispose(); // the save fails while reading values
    expect(() => h.saveCheckpoint(path, { model: broken })).toThrow();
    expect(readFileSync(path).equals(good)).toBe(true);
    expect(() => h.saveCheckpoint(join(dir, 'no-such-dir', 'x.safetensors'), { model: m })).toThrow();
    expect(readdirSync(dir).filter((f) => f.endsWith('.tmp'))).toEqual([]);
  });

  it('survives random corruption of the header without crashing', () => {
    const path = join(dir, 'fuzz.safetensors');
    h.saveCheckpoint(path, { model: model(1) });
    const full = readFileSync(path);
    const gen = new h.Generator(9);
    for (let i = 0; i < 300; i++) {
      const b = Buffer.from(full);
      for (let k = 0; k < 4; k++) b[gen.int(Math.min(b.length, 400))] = gen.int(256);
      try {
        const { tensors } = h.decodeSafetensors(b);
        expect(tensors.size).toBeGreaterThan(0);
      } catch (e) {
        expect(e).toBeInstanceOf(CheckpointError);
      }
    }
  });
});

describe('safetensors values', () => {
  it('round-trips float32, int32 and bool tensors', () => {
    const path = join(dir, 'types.safetensors');
    const t = new Map<string, TF.Tensor>([
      ['f', tf.tensor([1.5, -2], [2])],
      ['i', tf.tensor([[7, -8]], [1, 2], 'int32')],
      ['b', tf.tensor([true, false, true], [3], 'bool')],
    ]);
    h.saveSafetensors(path, t, { note: 'x' });
    const back = h.loadSafetensors(path);
    expect(back.metadata).toEqual({ note: 'x' });
    for (const [k, v] of t) {
      expect(back.tensors.get(k)!.dtype).toBe(v.dtype);
      expect(back.tensors.get(k)!.arraySync()).toEqual(v.arraySync());
    }
  });
});
