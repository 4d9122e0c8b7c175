import { PipelineError } from './errors.js';
import { formatAction, key, runLists, splitBackward, type Action, type ScheduleTable } from './ir.js';

/** A cost per stage: one number for all, or one per stage. */
export type StageCost = number | number[];

/** Costs of actions, in any time unit (the same for all). */
export interface Costs {
  /** Forward of one micro-batch through a stage (default 1). */
  F?: StageCost;
  /** Input-gradient half of backward (default 1). A backward with no W in the table costs B + W. */
  B?: StageCost;
  /** Weight-gradient half of backward (default 1). */
  W?: StageCost;
  /** Time from a send to the receive being able to complete (default 0). */
  latency?: number;
  /** Busy time of the optimizer step (default 0). */
  step?: number;
}

/** One action placed in time. */
export interface TimedAction {
  rank: number;
  action: Action;
  start: number;
  end: number;
  /** 'compute' for F, B, W and STEP; 'comm' for sends and receives (a receive spans its wait). */
  track: 'compute' | 'comm';
}

/** What a simulation gives. */
export interface Simulation {
  timeline: TimedAction[];
  /** Time of the last action's end. */
  makespan: number;
  /** Compute time per rank. */
  busy: number[];
  /** Fraction of rank-time not spent computing: 1 - sum(busy) / (ranks * makespan). */
  bubble: number;
  /** Most micro-batches with F done and B not yet done at once, per rank. */
  peakStash: number[];
  /** Most micro-batches with B done and W not yet done at once, per rank. */
  peakPendingW: number[];
}

function costOf(c: StageCost | undefined, s: number, dflt: number): number {
  if (c == null) return dflt;
  if (typeof c === 'number') return c;
  const v = c[s];
  if (v == null) throw new PipelineError(`simulate: no cost given for stage ${s} (${c.length} given)`);
  return v;
}

/**
 * Runs a table (with its communication) on ideal ranks: each action starts when its rank is free and
 * its inputs are there; a receive completes `latency` after its send. Tables without communication
 * are simulated as if transfers were free.
 */
export function simulate(t: ScheduleTable, costs: Costs = {}): Simulation {
  const split = splitBackward(t);
  const lat = costs.latency ?? 0;
  const dur = (a: Action): number => {
    switch (a.op) {
      case 'F':
        return costOf(costs.F, a.stage, 1);
      case 'B':
        return costOf(costs.B, a.stage, 1) + (split.has(key(a.stage, a.mb)) ? 0 : costOf(costs.W, a.stage, 1));
      case 'W':
        return costOf(costs.W, a.stage, 1);
      case 'STEP':
        return costs.step ?? 0;
      default:
        return 0;
    }
  };
  const ends = new Map<string, number>(); // op:stage:mb -> end
  const endOf = (op: string, s: number, mb: number) => ends.get(`${op}:${key(s, mb)}`);
  const remote = (s: number, o: number) => o >= 0 && o < t.stages && t.placement[o] !== t.placement[s];
  const free = new Array<number>(t.ranks).fill(0);
  const busy = new Array<number>(t.ranks).fill(0);
  const stash = new Array<number>(t.ranks).fill(0);
  const pendW = new Array<number>(t.ranks).fill(0);
  const peakStash = new Array<number>(t.ranks).fill(0);
  const peakPendingW = new Array<number>(t.ranks).fill(0);
  const timeline: TimedAction[] = [];

  // When the inputs of `a` are available, or undefined if not yet known.
  const readyAt = (a: Action): number | undefined => {
    const s = a.stage;
    const mb = a.mb;
    switch (a.op) {
      case 'F':
        if (s === 0) return 0;
        return remote(s, s - 1) ? endOf('RECV_F', s, mb) : endOf('F', s - 1, mb);
      case 'B': {
        const f = endOf('F', s, mb);
        if (f == null) return undefined;
        if (s === t.stages - 1) return f;
        const g = remote(s, s + 1) ? endOf('RECV_B', s, mb) : endOf('B', s + 1, mb);
        return g == null ? undefined : Math.max(f, g);
      }
      case 'W':
      case 'SEND_B':
        return endOf('B', s, mb);
      case 'SEND_F':
        return endOf('F', s, mb);
      case 'RECV_F': {
        const e = endOf('SEND_F', s - 1, mb);
        return e == null ? undefined : e + lat;
      }
      case 'RECV_B': {
        const e = endOf('SEND_B', s + 1, mb);
        return e == null ? undefined : e + lat;
      }
      case 'STEP':
        return 0;
    }
  };

  const stuck = runLists(t, (r, a) => {
    const ready = readyAt(a);
    if (ready == null) return false;
    const isComm = a.op !== 'F' && a.op !== 'B' && a.op !== 'W' && a.op !== 'STEP';
    const start = a.op.startsWith('RECV') ? free[r]! : Math.max(free[r]!, ready);
    const end = a.op.startsWith('RECV') ? Math.max(free[r]!, ready) : start + dur(a);
    ends.set(`${a.op}:${key(a.stage, a.mb)}`, end);
    free[r] = end;
    if (!isComm) busy[r]! += end - start;
    timeline.push({ rank: r, action: a, start, end, track: isComm ? 'comm' : 'compute' });
    if (a.op === 'F') peakStash[r] = Math.max(peakStash[r]!, ++stash[r]!);
    if (a.op === 'B') {
      stash[r]!--;
      if (split.has(key(a.stage, a.mb))) peakPendingW[r] = Math.max(peakPendingW[r]!, ++pendW[r]!);
    }
    if (a.op === 'W') pendW[r]!--;
    return true;
  });
  if (stuck.length) {
    const where = stuck.map((s) => `rank ${s.rank} at ${formatAction(t.actions[s.rank]![s.index]!)}`);
    throw new PipelineError(`simulate: schedule '${t.name}' cannot proceed (${where.join(', ')}); validate() explains why`);
  }
  const makespan = Math.max(0, ...free);
  const total = busy.reduce((a, b) => a + b, 0);
  return { timeline, makespan, busy, bubble: makespan > 0 ? 1 - total / (t.ranks * makespan) : 0, peakStash, peakPendingW };
}

/** The textbook bubble fraction of GPipe and 1F1B with equal stages: (p - 1) / (m + p - 1). */
export const bubbleGPipe = (p: number, m: number) => (p - 1) / (m + p - 1);
/** The bubble of interleaved 1F1B with v stages per rank: (p - 1) / (v m + p - 1). */
export const bubbleInterleaved = (p: number, m: number, v: number) => (p - 1) / (v * m + p - 1);
