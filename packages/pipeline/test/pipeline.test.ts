import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runJob } from './helpers.js';

const TOL = 1e-5;
const env = { HPDL_TIMEOUT_MS: '60000' };

describe('pipelines across real processes equal one process', () => {
  it.each([2, 3, 4])('every built-in schedule (zb-v and dualpipev too) at p = %i, uneven micro-batches: gradients, loss, 3 optimizer steps, stash, no leak', async (p) => {
    const r = await runJob('equal.mjs', p, { env });
    expect(r.err.join('\n')).toBe('');
    expect(r.code).toBe(0);
    const cases = r.reports;
    // gpipe, 1f1b, zb-h1 and zb-v at three m each, interleaved and dualpipev at two: one report per rank per case.
    expect(cases).toHaveLength(16 * p);
    for (const c of cases) {
      const what = `${c.schedule} p=${p} m=${c.m} rank ${c.rank}`;
      expect(c.gradErr, what).toBeLessThanOrEqual(TOL);
      expect(c.lossErr, what).toBeLessThanOrEqual(TOL);
      expect(c.paramErr, what).toBeLessThanOrEqual(TOL);
      // After the first step (which creates the optimizer's state) the number of live tensors is constant.
      expect(new Set(c.tensors.slice(1)).size, what).toBe(1);
      if (c.stages.includes(0)) {
        if (c.schedule === 'gpipe') expect(c.peakStash, what).toBe(c.m);
        if (c.schedule === '1f1b') expect(c.peakStash, what).toBe(Math.min(p, c.m));
        if (c.schedule === 'zb-h1') expect(c.peakStash, what).toBeLessThanOrEqual(p);
      }
      if (['zb-h1', 'zb-v', 'dualpipev'].includes(c.schedule)) expect(c.peakPendingW, what).toBeGreaterThan(0);
      else expect(c.peakPendingW, what).toBe(0);
      // The V schedules hold the first and the last stage on rank 0.
      if (c.v === 2 && c.schedule !== 'interleaved-1f1b' && c.rank === 0) expect(c.stages, what).toEqual([0, 2 * p - 1]);
    }
  }, 180_000);

  it.each([
    [2, '1f1b'],
    [3, 'gpipe'],
    [4, 'zb-h1'],
  ])('a char-level LSTM at p = %i (%s) takes micro-batches of different sizes and lengths in one step', async (p, schedule) => {
    const r = await runJob('lstm.mjs', p, { env, args: [schedule] });
    expect(r.err.join('\n')).toBe('');
    expect(r.code).toBe(0);
    expect(r.reports).toHaveLength(p);
    for (const c of r.reports) {
      expect(c.gradErr).toBeLessThanOrEqual(TOL);
      expect(c.lossErr).toBeLessThanOrEqual(TOL);
      expect(c.paramErr).toBeLessThanOrEqual(TOL);
      expect(new Set(c.tensors).size).toBe(1);
    }
  }, 120_000);

  it('hybrid dp=2 x pp=2 under zb-v (two stages per rank, buckets in the order their gradients are final) equals one process', async () => {
    const r = await runJob('hybrid.mjs', 4, { env: { ...env, DP: '2', SCHEDULE: 'zb-v' } });
    expect(r.err.join('\n')).toBe('');
    expect(r.code).toBe(0);
    const checks = r.reports.filter((c) => 'paramErr' in c);
    expect(checks).toHaveLength(4);
    for (const c of checks) {
      expect(c.paramErr).toBeLessThanOrEqual(TOL);
      expect(c.lossErr).toBeLessThanOrEqual(TOL);
    }
  }, 120_000);

  it('hybrid dp=2 x pp=2 equals one process on the combined batch; memory flat over 23 steps; merged trace', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hpdl-trace-'));
    const r = await runJob('hybrid.mjs', 4, { env: { ...env, DP: '2' }, args: [dir] });
    expect(r.err.join('\n')).toBe('');
    expect(r.code).toBe(0);
    const checks = r.reports.filter((c) => 'paramErr' in c);
    expect(checks.map((c) => `${c.replica}/${c.stage}`).sort()).toEqual(['0/0', '0/1', '1/0', '1/1']);
    for (const c of checks) {
      expect(c.paramErr).toBeLessThanOrEqual(TOL);
      expect(c.lossErr).toBeLessThanOrEqual(TOL);
    }
    for (const c of r.reports.filter((c) => 'tensors' in c)) expect(new Set(c.tensors).size).toBe(1);

    const trace = JSON.parse(readFileSync(join(dir, 'trace.json'), 'utf8'));
    const spans = trace.traceEvents.filter((e: any) => e.ph === 'X');
    expect(new Set(spans.map((e: any) => e.pid))).toEqual(new Set([0, 1, 2, 3]));
    for (const pid of [0, 1, 2, 3]) {
      const mine = spans.filter((e: any) => e.pid === pid);
      // 3 steps x 3 micro-batches of F and B on the compute track, and the step.
      expect(mine.filter((e: any) => e.tid === 0 && /^\dF\d$/.test(e.name))).toHaveLength(9);
      expect(mine.filter((e: any) => e.tid === 0 && /^\dB\d$/.test(e.name))).toHaveLength(9);
      expect(mine.filter((e: any) => e.name === 'STEP')).toHaveLength(3);
      expect(mine.filter((e: any) => e.tid === 1).length).toBeGreaterThanOrEqual(9);
      expect(mine.every((e: any) => e.ts >= 0 && e.dur >= 0)).toBe(true);
    }
    // Gradients averaged among replicas as each stage's are final, beside the backward still running
    // elsewhere: the last stage's reduction starts before the first stage's last backward ends.
    const reduces = spans.filter((e: any) => e.tid === 2);
    for (const pid of [0, 1, 2, 3]) expect(reduces.filter((e: any) => e.pid === pid && e.name === `ALLREDUCE ${pid % 2}`)).toHaveLength(3);
    for (const step of [20, 21, 22]) {
      const lastB = Math.max(...spans.filter((e: any) => e.pid === 0 && e.name === '0B2' && e.args.step === step).map((e: any) => e.ts + e.dur));
      const reduce = reduces.find((e: any) => e.pid === 1 && e.args.step === step)!;
      expect(reduce.ts, `step ${step}`).toBeLessThan(lastB);
    }
    const svg = readFileSync(join(dir, 'timeline.svg'), 'utf8');
    expect(svg.startsWith('<svg')).toBe(true);
    for (const r of [0, 1, 2, 3]) expect(svg).toContain(`>rank ${r}</text>`);
    expect((svg.match(/<rect /g) ?? []).length).toBeGreaterThan(4 * 21);
  }, 120_000);

  it('a stage killed mid-step ends the job with an error naming it on every other rank', async () => {
    const r = await runJob('kill.mjs', 3, { env: { ...env, KILL_RANK: '1', KILL_AT: '3' } });
    expect(r.code).not.toBe(0);
    expect(r.firstFailure).toEqual({ rank: 1, code: null, signal: 'SIGKILL' });
    const survivors = r.reports.filter((c) => c.error);
    expect(survivors.map((c) => c.rank).sort()).toEqual([0, 2]);
    for (const c of survivors) {
      expect(c.error).toBe('StageError');
      expect(c.message).toMatch(/world rank 1 is gone/);
      expect(c.message).toMatch(/failed at \d(RECV|SEND)_[FB]\d \(stage \d, micro-batch \d\)/);
      expect(c.ms).toBeLessThan(10_000);
    }
  }, 60_000);

  it.each([
    ['microbatches', /failed at 1RECV_F0 \(stage 1, micro-batch 0\): the activation of micro-batch 0 from stage 0 belongs to a step of 4 micro-batches, this rank's step has 3/],
    ['shape', /failed at 1F0 \(stage 1, micro-batch 0\): linear: input of shape \[3,150\] does not fit a weight of shape \[96,16\]/],
  ])('bad input at run time (%s): the rank that sees it names the action, the others the lost rank', async (mode, expected) => {
    const r = await runJob('bad.mjs', 2, { env: { ...env, MODE: mode } });
    expect(r.code).not.toBe(0);
    expect(r.firstFailure?.rank).toBe(1);
    const byRank = new Map(r.reports.map((c) => [c.rank, c]));
    expect(byRank.get(1)!.message).toMatch(expected);
    expect(byRank.get(0)!.message).toMatch(/world rank 1 is gone/);
  }, 60_000);
});

describe('placement, recomputation and tied weights across ranks', () => {
  it('a torch.distributed.pipelining table, recompute on every stage, a GPT tied across ranks (1f1b) and on one rank (zb-v), weight gradients per step or per micro-batch: all equal one process', async () => {
    const r = await runJob('features.mjs', 2, { env });
    expect(r.err.join('\n')).toBe('');
    expect(r.code).toBe(0);
    const by = (name: string) => r.reports.filter((c) => c.case === name);
    for (const c of r.reports) expect(c.paramErr, `${c.case} rank ${c.rank}`).toBeLessThanOrEqual(TOL);
    expect(by('torch-table').map((c) => c.stages)).toEqual(expect.arrayContaining([[0, 3], [1, 2]]));
    // Recomputation keeps less: each rank's peak bytes drop.
    for (const rank of [0, 1]) {
      const lean = by('recompute').find((c) => c.rank === rank)!;
      const full = by('no-recompute').find((c) => c.rank === rank)!;
      expect(lean.peakBytes, `rank ${rank}`).toBeLessThan(full.peakBytes);
    }
    // 1f1b: the embedding on rank 0, the tied head on rank 1, both copies identical after 3 steps.
    const tied = by('tied-1f1b');
    expect(tied.map((c) => c.table)).toHaveLength(2);
    expect(tied[0]!.table).toEqual(tied[1]!.table);
    // zb-v: the first and the last stage on rank 0, so the table lives there once.
    expect(by('tied-zb-v').find((c) => c.rank === 0)!.stages).toEqual([0, 3]);
    // Weight gradients summed in one product per step (forced on) and product by product (forced off).
    for (const c of by('batched-w')) expect(c.deferring, `rank ${c.rank}`).toBeGreaterThan(0);
    for (const c of by('per-microbatch-w')) expect(c.deferring).toBe(0);
  }, 120_000);
});

describe('gradient accumulation and clipping across stages and replicas', () => {
  it('dp=2 x pp=2: two forwardBackward calls then optimizerStep, and clipping by the global norm (a tied GPT too), equal one process on the combined batch', async () => {
    const r = await runJob('accumulate.mjs', 4, { env });
    expect(r.err.join('\n')).toBe('');
    expect(r.code).toBe(0);
    expect(r.reports).toHaveLength(12);
    for (const c of r.reports) {
      expect(c.paramErr, `${c.case} rank ${c.rank}`).toBeLessThanOrEqual(TOL);
      expect(c.normErr, `${c.case} rank ${c.rank}`).toBeLessThanOrEqual(TOL);
      if (c.clip) expect(c.firstNorm, `${c.case}: the clip must bind`).toBeGreaterThan(c.clip);
    }
  }, 120_000);
});

