import { describe, expect, it } from 'vitest';
import {
  B,
  F,
  ScheduleError,
  W,
  bubbleGPipe,
  bubbleInterleaved,
  computeOnly,
  formatAction,
  formatTable,
  getSchedule,
  gpipe,
  interleaved1F1B,
  oneF1B,
  parseAction,
  parseTable,
  registerSchedule,
  scheduleNames,
  simulate,
  validate,
  withCommunication,
  zbH1,
  zbV,
  dualPipeV,
  vPlacement,
  splitBackward,
  scheduleStagesPerRank,
  type ScheduleTable,
} from '../src/index.js';

const built = (name: string, p: number, m: number, v = 1) => withCommunication(getSchedule(name)({ ranks: p, microbatches: m, stagesPerRank: v }));
const bubbleTime = (t: ScheduleTable) => {
  const s = simulate(t);
  return (s.makespan * t.ranks - s.busy.reduce((a, b) => a + b, 0)) / t.ranks;
};

describe('schedule IR', () => {
  it('prints and parses the compact form', () => {
    for (const text of ['2F0', '0B13', '1W7', '3SEND_F2', '1RECV_B0', '0SEND_B4', '2RECV_F1', 'STEP']) expect(formatAction(parseAction(text))).toBe(text);
    expect(parseAction('12F3')).toEqual({ op: 'F', stage: 12, mb: 3 });
    expect(() => parseAction('F0')).toThrow(/cannot parse action 'F0'/);
    expect(() => parseAction('1X2')).toThrow(ScheduleError);
  });

  it('a whole table survives formatTable -> parseTable', () => {
    for (const name of scheduleNames()) {
      const t = built(name, 3, 6, name.startsWith('interleaved') ? 2 : scheduleStagesPerRank(getSchedule(name)));
      const back = parseTable(formatTable(t), { name });
      expect(back.actions).toEqual(t.actions);
      expect(back.placement).toEqual(t.placement);
      validate(back);
    }
  });

  it('withCommunication adds a receive before and a send after each cross-rank hand-off, and STEP', () => {
    const t = withCommunication(oneF1B({ ranks: 2, microbatches: 2 }));
    expect(formatTable(t)).toBe(
      ['rank 0: 0F0 0SEND_F0 0F1 0SEND_F1 0RECV_B0 0B0 0RECV_B1 0B1 STEP', 'rank 1: 1RECV_F0 1F0 1B0 1SEND_B0 1RECV_F1 1F1 1B1 1SEND_B1 STEP'].join('\n'),
    );
    expect(withCommunication(t)).toEqual(t);
    expect(computeOnly(t).actions[1]!.map(formatAction)).toEqual(['1F0', '1B0', '1F1', '1B1']);
  });
});

describe('built-in schedules', () => {
  it.each([2, 3, 4])('every built-in table validates at p = %i for m in {1, p, 2p+1} (interleaved where m is a multiple of p)', (p) => {
    for (const m of [1, p, 2 * p + 1, 4 * p]) {
      for (const name of ['gpipe', '1f1b', 'zb-h1']) validate(built(name, p, m));
      if (m % p === 0) for (const v of [2, 3]) validate(built('interleaved-1f1b', p, m, v));
      validate(built('zb-v', p, m, 2));
      if (m >= 2 * p) validate(built('dualpipev', p, m, 2));
    }
  });

  it('zb-v and dualpipev place 2p stages in a V, split backwards, and beat 1F1B and ZB-H1 in the simulator', () => {
    for (const p of [2, 3, 4]) {
      const m = 4 * p;
      const zv = built('zb-v', p, m, 2);
      const dv = built('dualpipev', p, m, 2);
      for (const t of [zv, dv]) {
        expect(t.placement).toEqual(vPlacement(p));
        expect(t.placement[0]).toBe(0);
        expect(t.placement[2 * p - 1]).toBe(0); // the first and the last stage on rank 0
      }
      // Every backward of zb-v is split; dualpipev splits only some, near the end.
      expect(splitBackward(zv).size).toBe(2 * p * m);
      expect(splitBackward(dv).size).toBeGreaterThan(0);
      expect(splitBackward(dv).size).toBeLessThan(2 * p * m);
      // Half-size stages on twice as many slots: costs F = B = W = 1 per half stage against 2 per full one.
      const half = { F: 1, B: 1, W: 1 };
      const full = { F: 2, B: 2, W: 2 };
      const ms = (t: ScheduleTable, c: { F: number; B: number; W: number }) => simulate(t, c).makespan;
      expect(ms(zv, half)).toBeLessThan(ms(built('zb-h1', p, m), full));
      expect(ms(zv, half)).toBeLessThan(ms(built('1f1b', p, m), full));
      expect(ms(dv, half)).toBeLessThan(ms(built('1f1b', p, m), full));
      // ZB-V's activation memory is 1F1B's: at most 2p half stages between F and B on any rank.
      expect(Math.max(...simulate(zv, half).peakStash)).toBeLessThanOrEqual(2 * p);
    }
    expect(() => zbV({ ranks: 2, microbatches: 4 })).toThrow('zb-v places two stages on every rank (a V); stagesPerRank is 1, use 2');
    expect(() => dualPipeV({ ranks: 2, microbatches: 3, stagesPerRank: 2 })).toThrow('dualpipev needs at least as many micro-batches as stages: 3 micro-batches for 4 stages (use 4 or more)');
  });

  it("reads torch.distributed.pipelining's notation: I and W, BW, overlapped pairs, empty cells, one CSV row per rank", () => {
    // ZB-V-like table for 2 ranks (stages 0 and 3 on rank 0, 1 and 2 on rank 1), 2 micro-batches.
    const csv = [
      '0F0,0F1,,3F0,(3F1;3I0)OVERLAP_F_B,3I1,3W0,0I0,0I1,3W1,0W0,0W1',
      ',1F0,2F0,1F1,2F1,2I0,2W0,2BW1,1I0,1B1,1W0',
    ].join('\n');
    const t = parseTable(csv, { name: 'from-torch' });
    expect(t.placement).toEqual([0, 1, 1, 0]);
    expect(formatTable(t).split('\n')[0]).toBe('rank 0: 0F0 0F1 3F0 3F1 3B0 3B1 3W0 0B0 0B1 3W1 0W0 0W1');
    expect(splitBackward(t).has('2:1')).toBe(false); // BW: a whole backward
    expect(splitBackward(t).has('1:0')).toBe(true); // I then W
    validate(withCommunication(t));
    expect(() => parseTable('0F0,0I0\n1F0,1B0')).toThrow('0I0 computes only the input gradient, but the table has no 0W0 for the weights');
    expect(() => parseTable('0F0,0BW0,0W0\n1F0,1B0')).toThrow('0B0 is a whole backward, but the table also has 0W0: write 0I0 for a split one');
    expect(() => parseTable('0F0,0X0')).toThrow(/cannot parse '0X0' as an action of torch.distributed.pipelining/);
  });

  it('interleaved 1F1B refuses micro-batch counts that are not a multiple of the ranks, saying what would work', () => {
    expect(() => interleaved1F1B({ ranks: 4, microbatches: 6, stagesPerRank: 2 })).toThrow(/multiple of the ranks: found 6 micro-batches for 4 ranks \(try 8\)/);
    expect(() => oneF1B({ ranks: 4, microbatches: 6, stagesPerRank: 2 })).toThrow(/one stage per rank/);
    expect(() => gpipe({ ranks: 0, microbatches: 6 })).toThrow(/ranks must be a positive integer/);
  });

  it('zb-h1 splits every backward into B then W', () => {
    const t = zbH1({ ranks: 3, microbatches: 5 });
    for (const list of t.actions) {
      expect(list.filter((a) => a.op === 'W')).toHaveLength(5);
      for (const w of list.filter((a) => a.op === 'W')) {
        const iw = list.indexOf(w);
        expect(list.findIndex((a) => a.op === 'B' && a.mb === w.mb)).toBeLessThan(iw);
      }
    }
  });

  it('unknown names list the known ones; user schedules can be registered', () => {
    expect(() => getSchedule('pipedream')).toThrow(/unknown schedule 'pipedream': known schedules are gpipe, 1f1b, interleaved-1f1b, zb-h1/);
    registerSchedule('reverse-gpipe', (o) => {
      const t = gpipe(o);
      return { ...t, name: 'reverse-gpipe', actions: t.actions.map((l) => [...l.filter((a) => a.op === 'F'), ...l.filter((a) => a.op === 'B').reverse()]) };
    });
    validate(built('reverse-gpipe', 3, 4));
    expect(scheduleNames()).toContain('reverse-gpipe');
    expect(() => registerSchedule('bad name', gpipe)).toThrow(/letters, digits/);
  });
});

describe('validator', () => {
  const two = (a0: string, a1: string) => parseTable(`rank 0: ${a0}\nrank 1: ${a1}`, { name: 't' });

  it('accepts a correct hand-written table', () => {
    validate(two('0F0 0SEND_F0 0RECV_B0 0B0 STEP', '1RECV_F0 1F0 1B0 1SEND_B0 STEP'));
  });

  it('reports missing work with the grid', () => {
    const e = (() => {
      try {
        validate(two('0F0 0SEND_F0 0RECV_B0 0B0', '1RECV_F0 1F0 1SEND_B0'));
      } catch (err) {
        return err as ScheduleError;
      }
    })();
    expect(e).toBeInstanceOf(ScheduleError);
    expect(e!.message).toMatch(/1B0 is missing from rank 1/);
    expect(e!.grid).toMatch(/^step\s+rank 0\s+rank 1/);
  });

  it('reports repeated work, marking both copies', () => {
    expect(() => validate(two('0F0 0SEND_F0 0F0 0RECV_B0 0B0', '1RECV_F0 1F0 1B0 1SEND_B0'))).toThrow(/0F0 appears twice[\s\S]*\[0F0\][\s\S]*\[0F0\]/);
  });

  it('reports an action on the wrong rank', () => {
    expect(() => validate({ ...two('0F0 0SEND_F0 0RECV_B0 0B0', '1RECV_F0 1F0 1B0 1SEND_B0'), placement: [0, 0] })).toThrow(/rank 1 runs 1RECV_F0 but stage 1 is on rank 0/);
  });

  it('reports a backward before its forward', () => {
    expect(() => validate(two('0F0 0SEND_F0 0RECV_B0 0B0', '1RECV_F0 1B0 1F0 1SEND_B0'))).toThrow(/1B0 on rank 1 needs 1F0 first, which comes later/);
  });

  it('reports a missing receive, and suggests withCommunication', () => {
    expect(() => validate(two('0F0 0B0', '1F0 1B0'))).toThrow(/0SEND_F0 is missing from rank 0 \(withCommunication\(\)/);
  });

  it('finds a deadlock and marks where each rank waits', () => {
    // Rank 0 waits for a gradient before sending the activation that would produce it.
    let msg = '';
    try {
      validate(two('0F0 0RECV_B0 0SEND_F0 0B0', '1RECV_F0 1F0 1B0 1SEND_B0'));
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toMatch(/deadlock: rank 0 waits at 0RECV_B0, rank 1 waits at 1RECV_F0/);
    expect(msg).toMatch(/1\s+\[0RECV_B0\]/);
    expect(msg).toMatch(/0\s+0F0\s+\[1RECV_F0\]/);
  });

  it('rejects W without B first, W in forward-only tables, STEP not last', () => {
    expect(() => validate(two('0F0 0SEND_F0 0W0 0RECV_B0 0B0', '1RECV_F0 1F0 1B0 1SEND_B0'))).toThrow(/0W0 on rank 0 needs 0B0 first/);
    expect(() => validate(two('0F0 0SEND_F0', '1RECV_F0 1F0 1B0'), { backward: false })).toThrow(/1B0 in a forward-only table/);
    expect(() => validate(two('0F0 STEP 0SEND_F0 0RECV_B0 0B0', '1RECV_F0 1F0 1B0 1SEND_B0'))).toThrow(/STEP must be the last action of rank 0/);
  });
});

describe('simulator', () => {
  it.each([
    [2, 1],
    [2, 8],
    [3, 7],
    [4, 4],
    [4, 9],
    [8, 16],
  ])('GPipe and 1F1B bubbles equal (p-1)/(m+p-1) at p=%i m=%i; 1F1B stashes at most p - r, GPipe m', (p, m) => {
    const g = simulate(built('gpipe', p, m));
    const o = simulate(built('1f1b', p, m));
    expect(g.bubble).toBeCloseTo(bubbleGPipe(p, m), 12);
    expect(o.bubble).toBeCloseTo(bubbleGPipe(p, m), 12);
    expect(g.peakStash).toEqual(new Array(p).fill(m));
    expect(o.peakStash).toEqual(Array.from({ length: p }, (_, r) => Math.min(p - r, m)));
  });

  it.each([
    [2, 8, 2],
    [4, 8, 2],
    [4, 16, 4],
    [3, 9, 3],
  ])('interleaved 1F1B divides the bubble by v: (p-1)/(v m + p - 1) at p=%i m=%i v=%i', (p, m, v) => {
    const t = built('interleaved-1f1b', p, m, v);
    const s = simulate(t, { F: 1 / v, B: 1 / v, W: 1 / v });
    expect(s.bubble).toBeCloseTo(bubbleInterleaved(p, m, v), 12);
    expect(s.bubble).toBeLessThan(bubbleGPipe(p, m));
  });

  it.each([
    [2, 8],
    [4, 8],
    [4, 16],
    [8, 24],
  ])('ZB-H1 leaves about a third of 1F1B\'s bubble at p=%i m=%i, with 1F1B\'s activation memory', (p, m) => {
    const zb = built('zb-h1', p, m);
    const ratio = bubbleTime(zb) / bubbleTime(built('1f1b', p, m));
    expect(ratio).toBeGreaterThan(0.3);
    expect(ratio).toBeLessThan(0.37);
    const s = simulate(zb);
    for (let r = 0; r < p; r++) expect(s.peakStash[r]! + s.peakPendingW[r]!).toBeLessThanOrEqual(p + 1);
    expect(Math.max(...s.peakStash)).toBeLessThanOrEqual(p);
  });

  it('uses per-stage costs and communication latency', () => {
    const t = built('gpipe', 2, 2);
    const s = simulate(t, { F: [1, 3], B: [2, 6], W: 0, latency: 0.5 });
    // stage 1 is three times slower: it dominates; each hand-off adds 0.5.
    expect(s.makespan).toBeCloseTo(1 + 0.5 + 3 + 3 + 6 + 6 + 0.5 + 2, 9);
    expect(s.busy).toEqual([2 + 4, 6 + 12]);
  });

  it('a table that cannot proceed is reported', () => {
    const bad = parseTable('rank 0: 0F0 0RECV_B0 0SEND_F0 0B0\nrank 1: 1RECV_F0 1F0 1B0 1SEND_B0');
    expect(() => simulate(bad)).toThrow(/cannot proceed \(rank 0 at 0RECV_B0, rank 1 at 1RECV_F0\)/);
  });

  it('a schedule written from scratch gets validation and simulation', () => {
    // "Eager 1F1B": one more warm-up forward than 1F1B on every rank but the last.
    const eager = (o: { ranks: number; microbatches: number }): ScheduleTable => {
      const { ranks: p, microbatches: m } = o;
      const actions = Array.from({ length: p }, (_, r) => {
        const warm = Math.min(r === p - 1 ? 0 : p - r, m);
        const list = [];
        for (let i = 0; i < warm; i++) list.push(F(r, i));
        for (let i = 0; i < m - warm; i++) list.push(F(r, warm + i), B(r, i));
        for (let i = m - warm; i < m; i++) list.push(B(r, i));
        return list;
      });
      return { name: 'eager-1f1b', ranks: p, stages: p, microbatches: m, placement: actions.map((_, r) => r), actions };
    };
    const t = withCommunication(eager({ ranks: 4, microbatches: 8 }));
    validate(t);
    const s = simulate(t);
    expect(s.bubble).toBeCloseTo(bubbleGPipe(4, 8), 12);
    expect(s.peakStash[0]).toBe(5);
    expect(W(0, 0).op).toBe('W');
  });
});
