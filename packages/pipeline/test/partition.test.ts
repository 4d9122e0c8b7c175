import { describe, expect, it } from 'vitest';
import { Conv2d, Embedding, Flatten, Generator, Linear, ReLU, Sequential, initBackend, manualSeed, tensor, type Parameter } from '@hpdl/core';
import { init } from '@hpdl/comm';
import {
  Pipeline,
  balanceByParams,
  balanceBySize,
  balanceByTime,
  checkChain,
  microbatches,
  partition,
  resolveBalance,
  splitBalanced,
  vPlacement,
  splitSizes,
} from '../src/index.js';

await initBackend('wasm');

/** Every way to cut n items into k non-empty runs: the smallest largest sum. */
function bruteForce(w: number[], k: number): number {
  const n = w.length;
  let best = Infinity;
  const rec = (start: number, left: number, worst: number) => {
    if (left === 1) {
      best = Math.min(best, Math.max(worst, w.slice(start).reduce((a, b) => a + b, 0)));
      return;
    }
    for (let end = start + 1; end <= n - left + 1; end++) rec(end, left - 1, Math.max(worst, w.slice(start, end).reduce((a, b) => a + b, 0)));
  };
  rec(0, k, 0);
  return best;
}

const mlp = () => new Sequential(new Linear(4, 64), new ReLU(), new Linear(64, 64), new ReLU(), new Linear(64, 3));

describe('partitioning', () => {
  it('splitBalanced finds the best contiguous split (checked against every split)', () => {
    let seed = 1;
    const rnd = () => ((seed = (seed * 16807) % 2147483647) / 2147483647);
    for (let trial = 0; trial < 200; trial++) {
      const n = 1 + Math.floor(rnd() * 9);
      const k = 1 + Math.floor(rnd() * n);
      const w = Array.from({ length: n }, () => Math.floor(rnd() * 20));
      const counts = splitBalanced(w, k);
      expect(counts).toHaveLength(k);
      expect(counts.every((c) => c >= 1)).toBe(true);
      expect(counts.reduce((a, b) => a + b, 0)).toBe(n);
      let at = 0;
      const worst = Math.max(...counts.map((c) => w.slice(at, (at += c)).reduce((a, b) => a + b, 0)));
      expect(worst).toBe(bruteForce(w, k));
    }
  });

  it('by parameters puts the big layers apart', () => {
    manualSeed(1);
    const layers = mlp().layers;
    // 320, 0, 4160, 0, 195 parameters
    expect(balanceByParams(layers, 2)).toEqual([2, 3]);
    expect(balanceByParams(layers, 3)).toEqual([2, 2, 1]); // the 4160-parameter layer with a ReLU: any optimum
  });

  it('by time and by size profile each layer on a sample', () => {
    manualSeed(1);
    const layers = new Sequential(new Linear(32, 512), new ReLU(), new Linear(512, 512), new ReLU(), new Linear(512, 4), new ReLU()).layers;
    const sample = tensor(new Float32Array(64 * 32).fill(0.5), [64, 32]);
    const byTime = balanceByTime(layers, 2, sample, 3);
    expect(byTime.reduce((a, b) => a + b, 0)).toBe(6);
    // The 512x512 layer dominates: it is alone or nearly so on one side.
    expect(byTime[0] === 2 || byTime[0] === 3).toBe(true);
    const bySize = balanceBySize(layers, 3, sample);
    expect(bySize).toHaveLength(3);
    expect(resolveBalance(layers, 2, { by: 'size', sample })).toEqual(balanceBySize(layers, 2, sample));
    sample.dispose();
  });

  it('with stages sharing ranks (a V), balances each rank\'s load: checked against every split', () => {
    const gen = new Generator(3);
    for (let trial = 0; trial < 30; trial++) {
      const n = 4 + gen.int(6);
      const p = 2 + gen.int(Math.min(2, Math.floor(n / 2) - 1));
      const placement = vPlacement(p);
      const w = Array.from({ length: n }, () => 1 + gen.int(9));
      const load = (counts: number[]) => {
        const per = new Array<number>(p).fill(0);
        let at = 0;
        counts.forEach((c, s) => {
          per[placement[s]!]! += w.slice(at, at + c).reduce((a, b) => a + b, 0);
          at += c;
        });
        return Math.max(...per);
      };
      let best = Infinity;
      const all = (left: number, parts: number, acc: number[]) => {
        if (parts === 1) return void (best = Math.min(best, load([...acc, left])));
        for (let c = 1; c <= left - parts + 1; c++) all(left - c, parts - 1, [...acc, c]);
      };
      all(n, 2 * p, []);
      const got = splitBalanced(w, 2 * p, placement);
      expect(got.reduce((a, b) => a + b, 0)).toBe(n);
      expect(load(got), `weights [${w}] on ${p} ranks`).toBe(best);
    }
    // A 2-block GPT's five layers in a V on 2 ranks: the blocks go to different ranks.
    expect(splitBalanced([1, 10, 10, 1, 1], 4, vPlacement(2))).toEqual([2, 1, 1, 1]);
  });

  it('explains impossible splits before anything runs', () => {
    manualSeed(1);
    const layers = mlp().layers;
    expect(() => resolveBalance(layers, 8)).toThrow(/cannot split 5 layers into 8 stages: every stage needs at least one layer/);
    expect(() => resolveBalance(layers, 2, [5, 0])).toThrow(/stage 1 would be empty/);
    expect(() => resolveBalance(layers, 2, [2, 2])).toThrow(/covers 4 layers, the model has 5/);
    expect(() => resolveBalance(layers, 3, [2, 3])).toThrow(/lists 2 stages \(2, 3\), the pipeline has 3/);
  });

  it('checks that stages chain, naming the stage and the shapes', () => {
    manualSeed(1);
    const good = partition(new Sequential(new Conv2d(1, 4, 3), new Flatten(), new Linear(400, 12), new Linear(12, 3)).layers, [2, 1, 1]);
    expect(checkChain(good, { shape: [1, 12, 12, 1] })).toEqual([[1, 400], [1, 12], [1, 3]]);
    const bad = partition(new Sequential(new Conv2d(1, 4, 3), new Flatten(), new Linear(100, 10), new Linear(10, 3)).layers, [2, 1, 1]);
    expect(() => checkChain(bad, { shape: [1, 12, 12, 1] })).toThrow(
      /stage 1 \(layer 2\) cannot take the output of stage 0 \(shape \[1, 400\], float32\): linear: input of shape \[1,400\] does not fit a weight of shape \[100,10\]/,
    );
    expect(() => checkChain(good, { shape: [1, 12, 12, 3] })).toThrow(/stage 0 \(layers 0-1\) cannot take the input \(shape \[1, 12, 12, 3\], float32\)/);
  });

  it('stage parameters keep the names they have in the whole model', () => {
    manualSeed(1);
    const stages = partition(mlp().layers, [2, 3]);
    expect(stages[1]!.namedParameters().map((e) => e[0])).toEqual(['2.weight', '2.bias', '4.weight', '4.bias']);
    expect(stages[1]!.span).toBe('layers 2-4');
  });
});

describe('micro-batches', () => {
  it('cuts uneven batches into parts differing by one, and refuses too few samples', () => {
    expect(splitSizes(10, 4)).toEqual([3, 3, 2, 2]);
    expect(splitSizes(8, 8)).toEqual(new Array(8).fill(1));
    expect(() => splitSizes(3, 8)).toThrow(/a batch of 3 samples cannot be cut into 8 micro-batches/);
    const x = tensor(Float32Array.from({ length: 10 * 2 }, (_, i) => i), [10, 2]);
    const y = tensor(Int32Array.from({ length: 10 }, (_, i) => i), [10], 'int32');
    const mbs = microbatches(x, y, 3);
    expect(mbs.map((b) => b.input!.shape[0])).toEqual([4, 3, 3]);
    expect(Array.from(mbs[1]!.target!.dataSync())).toEqual([4, 5, 6]);
    expect(() => microbatches(x, tensor(new Int32Array(9), [9], 'int32'), 3)).toThrow(/disagree on the batch size/);
    for (const b of mbs) { b.input!.dispose(); b.target!.dispose(); }
    x.dispose();
    y.dispose();
  });
});

describe('Pipeline.create in one process', () => {
  it('refuses more stages than layers, wrong data-parallel sizes and schedules of the wrong shape', async () => {
    const world = await init({ rank: 0, size: 1 });
    await expect(Pipeline.create({ comm: world, model: mlp, microbatches: 2, stagesPerRank: 8, schedule: 'interleaved-1f1b' })).rejects.toThrow(/cannot split 5 layers into 8 stages/);
    await expect(Pipeline.create({ comm: world, model: mlp, microbatches: 2, dataParallel: 2 })).rejects.toThrow(/dataParallel 2 must be a positive integer dividing the 1 ranks/);
    await expect(Pipeline.create({ comm: world, model: () => new Embedding(3, 4), microbatches: 2 })).rejects.toThrow(/cannot split a Embedding into stages: pass a Sequential/);
    await expect(Pipeline.create({ comm: world, model: mlp, microbatches: 2, schedule: 'nope' })).rejects.toThrow(/unknown schedule 'nope'/);
    await expect(
      Pipeline.create({ comm: world, model: mlp, microbatches: 2, sampleInput: { shape: [1, 5] } }),
    ).rejects.toThrow(/stage 0 \(layers 0-4\) cannot take the input \(shape \[1, 5\], float32\)/);
    await world.close();
  });

  it('trains a one-rank pipeline with two local stages exactly like the plain model', async () => {
    const { SGD, crossEntropy, tidy, Generator, randn, randint } = await import('@hpdl/core');
    const world = await init({ rank: 0, size: 1 });
    const opt = (ps: Parameter[]) => new SGD(ps, { lr: 0.1 });
    const pipe = await Pipeline.create({ comm: world, model: mlp, seed: 3, microbatches: 3, stagesPerRank: 2, schedule: 'interleaved-1f1b', loss: crossEntropy, optimizer: opt });
    manualSeed(3);
    const ref = mlp();
    const refOpt = opt(ref.parameters());
    const g = new Generator(5);
    for (let s = 0; s < 3; s++) {
      const x = randn([7, 4], 1, 0, g);
      const y = randint(3, [7], g);
      const r = await pipe.step({ input: x, target: y });
      const l = tidy(() => crossEntropy(ref.forward(x), y));
      expect(r.loss).toBeCloseTo(l.item(), 5);
      l.backward();
      l.dispose();
      refOpt.step();
      ref.zeroGrad();
      x.dispose();
      y.dispose();
    }
    const want = new Map(ref.namedParameters());
    for (const [k, p] of [...pipe.stages.values()].flatMap((st) => st.namedParameters())) {
      const a = p.dataSync();
      const b = want.get(k)!.dataSync();
      for (let i = 0; i < a.length; i++) expect(a[i]).toBeCloseTo(b[i]!, 5);
    }
    const { output } = await pipe.predict({ input: tensor(new Float32Array(8), [2, 4]), microbatches: 2 });
    expect(output!.shape).toEqual([2, 3]);
    output!.dispose();
    await world.close();
  });
});
