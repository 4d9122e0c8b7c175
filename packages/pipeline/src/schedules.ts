import { ScheduleError } from './errors.js';
import { B, F, W, key, loopedPlacement, vPlacement, type Action, type ScheduleFn, type ScheduleOptions, type ScheduleTable } from './ir.js';

function check(o: ScheduleOptions, name: string): { p: number; m: number; v: number } {
  const p = o.ranks;
  const m = o.microbatches;
  const v = o.stagesPerRank ?? 1;
  for (const [what, n] of [['ranks', p], ['microbatches', m], ['stagesPerRank', v]] as const) {
    if (!Number.isInteger(n) || n < 1) throw new ScheduleError(`${name}: ${what} must be a positive integer, found ${n}`);
  }
  return { p, m, v };
}

function table(name: string, p: number, m: number, v: number, actions: Action[][], placement = loopedPlacement(p, p * v)): ScheduleTable {
  return { name, ranks: p, stages: p * v, microbatches: m, placement, actions };
}

function single(name: string, o: ScheduleOptions): { p: number; m: number } {
  const { p, m, v } = check(o, name);
  if (v !== 1) throw new ScheduleError(`${name} runs one stage per rank; stagesPerRank ${v} needs an interleaved schedule`);
  return { p, m };
}

/** GPipe: every forward, then every backward (stashes all m micro-batches' activations). */
export const gpipe: ScheduleFn = (o) => {
  const { p, m } = single('gpipe', o);
  const actions = Array.from({ length: p }, (_, r) => {
    const list: Action[] = [];
    for (let i = 0; i < m; i++) list.push(F(r, i));
    for (let i = 0; i < m; i++) list.push(B(r, i));
    return list;
  });
  return table('gpipe', p, m, 1, actions);
};

/** 1F1B (PipeDream-Flush): p - r - 1 warm-up forwards, then one forward one backward; at most p - r stashed. */
export const oneF1B: ScheduleFn = (o) => {
  const { p, m } = single('1f1b', o);
  const actions = Array.from({ length: p }, (_, r) => {
    const warm = Math.min(p - r - 1, m);
    const list: Action[] = [];
    for (let i = 0; i < warm; i++) list.push(F(r, i));
    for (let i = 0; i < m - warm; i++) list.push(F(r, warm + i), B(r, i));
    for (let i = m - warm; i < m; i++) list.push(B(r, i));
    return list;
  });
  return table('1f1b', p, m, 1, actions);
};

/**
 * Interleaved 1F1B (Megatron-LM): each rank holds v stages (r, r + p, ...), micro-batches go round in
 * groups of p per stage, which divides the bubble by v. Needs m to be a multiple of p.
 */
export const interleaved1F1B: ScheduleFn = (o) => {
  const { p, m, v } = check(o, 'interleaved-1f1b');
  if (m % p !== 0) {
    throw new ScheduleError(`interleaved-1f1b needs the number of micro-batches to be a multiple of the ranks: found ${m} micro-batches for ${p} ranks (try ${Math.ceil(m / p) * p})`);
  }
  const total = m * v;
  const at = (r: number, k: number, forward: boolean): [number, number] => {
    const within = k % (p * v);
    const chunk = Math.floor(within / p);
    const mb = Math.floor(k / (p * v)) * p + (within % p);
    return [(forward ? chunk : v - 1 - chunk) * p + r, mb];
  };
  const actions = Array.from({ length: p }, (_, r) => {
    const warm = m === p ? total : Math.min((p - r - 1) * 2 + (v - 1) * p, total);
    const list: Action[] = [];
    for (let k = 0; k < warm; k++) list.push(F(...at(r, k, true)));
    for (let k = 0; k < total - warm; k++) list.push(F(...at(r, warm + k, true)), B(...at(r, k, false)));
    for (let k = total - warm; k < total; k++) list.push(B(...at(r, k, false)));
    return list;
  });
  return table('interleaved-1f1b', p, m, v, actions);
};

type Pick = (ready: Action[], r: number) => Action | undefined;

/**
 * List scheduling with unit costs (F = B = W = 1, free communication): at each time step every idle
 * rank picks, by `pick`, one of its actions whose inputs are ready. Used to derive tables whose
 * order is easier to state as a policy than as a formula.
 */
function greedy(name: string, p: number, m: number, v: number, withBackward: boolean, split: boolean, pick: Pick, placement = loopedPlacement(p, p * v)): ScheduleTable {
  const S = p * v;
  const end = new Map<string, number>(); // 'F:s:mb' -> end time
  const actions: Action[][] = Array.from({ length: p }, () => []);
  const todo: Action[][] = Array.from({ length: p }, (_, r) => {
    const out: Action[] = [];
    for (let s = 0; s < S; s++) {
      if (placement[s] !== r) continue;
      for (let i = 0; i < m; i++) {
        out.push(F(s, i));
        if (withBackward) out.push(B(s, i));
        if (withBackward && split) out.push(W(s, i));
      }
    }
    return out;
  });
  const inFlight = new Array<number>(p).fill(0);
  const pendingW = new Array<number>(p).fill(0);
  const done = (op: string, s: number, mb: number, t: number) => {
    const e = end.get(`${op}:${key(s, mb)}`);
    return e != null && e <= t;
  };
  const isReady = (a: Action, t: number): boolean => {
    if (a.op === 'F') return a.stage === 0 || done('F', a.stage - 1, a.mb, t);
    if (a.op === 'B') return done('F', a.stage, a.mb, t) && (a.stage === S - 1 || done('B', a.stage + 1, a.mb, t));
    return done('B', a.stage, a.mb, t);
  };
  let remaining = todo.reduce((n, l) => n + l.length, 0);
  for (let t = 0; remaining > 0; t++) {
    if (t > 10 * S * m + 10) throw new ScheduleError(`${name}: the generator made no progress (internal error)`);
    for (let r = 0; r < p; r++) {
      const busyUntil = actions[r]!.length ? end.get(`${actions[r]!.at(-1)!.op}:${key(actions[r]!.at(-1)!.stage, actions[r]!.at(-1)!.mb)}`)! : 0;
      if (busyUntil > t) continue;
      const ready = todo[r]!.filter((a) => isReady(a, t));
      const a = pick(ready, r);
      if (!a) continue;
      todo[r]!.splice(todo[r]!.indexOf(a), 1);
      remaining--;
      actions[r]!.push(a);
      end.set(`${a.op}:${key(a.stage, a.mb)}`, t + 1);
      if (a.op === 'F') inFlight[r]!++;
      if (a.op === 'B') {
        inFlight[r]!--;
        if (split) pendingW[r]!++;
      }
      if (a.op === 'W') pendingW[r]!--;
    }
  }
  return table(name, p, m, v, actions, placement);
}

/**
 * ZB-H1 (Qi et al., "Zero Bubble Pipeline Parallelism"): backward split into B (input gradient, on
 * the critical path) and W (weight gradients). Warm-up as 1F1B; rank r lets its W lag its B by r
 * micro-batches, so the W's fill what would be the cool-down bubble. At most p micro-batches are
 * between F and W on any rank: the activation memory of 1F1B. Bubble about a third of 1F1B's when
 * F, B and W cost the same.
 */
export const zbH1: ScheduleFn = (o) => {
  const { p, m } = single('zb-h1', o);
  const actions = Array.from({ length: p }, (_, r) => {
    const warm = Math.min(p - r - 1, m);
    const list: Action[] = [];
    let nextW = 0;
    let bs = 0;
    const backward = (i: number) => {
      list.push(B(r, i));
      if (bs++ >= r) list.push(W(r, nextW++));
    };
    for (let i = 0; i < warm; i++) list.push(F(r, i));
    for (let i = 0; i < m - warm; i++) {
      list.push(F(r, warm + i));
      backward(i);
    }
    for (let i = m - warm; i < m; i++) backward(i);
    while (nextW < m) list.push(W(r, nextW++));
    return list;
  });
  return table('zb-h1', p, m, 1, actions);
};

/**
 * ZB-V (Qi et al., "Pipeline Parallelism with Controllable Memory", the V schedule of zero-bubble
 * pipelining): 2p stages in a V, rank r holding stages r and 2p - 1 - r, so the first and the last
 * stage share rank 0 and the turn of the V needs no transfer. Backward split into B and W; W's fill
 * the bubbles. Per rank at most about 2p micro-batch-stages are between F and W, the activation
 * memory of 1F1B for the same model; with F, B and W of equal cost the bubble nearly vanishes.
 */
export const zbV: ScheduleFn = (o) => {
  const { p, m, v } = check(o, 'zb-v');
  if (v !== 2) throw new ScheduleError(`zb-v places two stages on every rank (a V); stagesPerRank is ${v}, use 2`);
  // Built for at least 2p - 1 micro-batches (what fills the V), then cut to m.
  const n = Math.max(m, 2 * p - 1);
  const actions = Array.from({ length: p }, (_, r) => {
    const down = r; // the stage going down the V
    const up = 2 * p - 1 - r; // the stage coming back up
    const list: Action[] = [];
    const count = { f0: 0, f1: 0, b0: 0, b1: 0, w0: 0, w1: 0 };
    const f0 = () => list.push(F(down, count.f0++));
    const f1 = () => list.push(F(up, count.f1++));
    const b0 = () => list.push(B(down, count.b0++));
    const b1 = () => list.push(B(up, count.b1++));
    const w0 = () => list.push(W(down, count.w0++));
    const w1 = () => list.push(W(up, count.w1++));
    for (let i = 0; i < 2 * (p - r) - 1; i++) f0();
    for (let i = 0; i < r; i++) (f1(), f0());
    for (let i = 0; i < p - r; i++) (f1(), b1(), w1());
    while (count.f1 < count.f0 || count.f0 < n) {
      if (count.f0 < n) f0();
      b0();
      w0();
      f1();
      b1();
      w1();
    }
    for (let i = 0; i < r; i++) (b0(), b1());
    for (let i = 0; i < p - r; i++) (b0(), w0());
    while (count.w1 < count.b1) w1();
    while (count.w0 < count.b0) w0();
    return list.filter((a) => a.mb < m);
  });
  return table('zb-v', p, m, 2, actions, vPlacement(p));
};

/**
 * DualPipeV (DeepSeek's DualPipe folded into a V, as torch.distributed.pipelining's): 2p stages in a
 * V; after the warm-up, each step pairs the forward of one stage with the backward of the other
 * (overlapped on GPUs; here the two run one after the other), and the last backwards split into B and
 * W so that W's fill the drain. Needs at least 2p micro-batches.
 */
export const dualPipeV: ScheduleFn = (o) => {
  const { p, m, v } = check(o, 'dualpipev');
  if (v !== 2) throw new ScheduleError(`dualpipev places two stages on every rank (a V); stagesPerRank is ${v}, use 2`);
  if (m < 2 * p) throw new ScheduleError(`dualpipev needs at least as many micro-batches as stages: ${m} micro-batches for ${2 * p} stages (use ${2 * p} or more)`);
  const actions = Array.from({ length: p }, (_, r) => {
    const down = r;
    const up = 2 * p - 1 - r;
    const list: Action[] = [];
    const next = { f: new Map<number, number>(), b: new Map<number, number>(), w: new Map<number, number>() };
    const pendingW: [number, number][] = [];
    const take = (m: Map<number, number>, s: number) => {
      const i = m.get(s) ?? 0;
      m.set(s, i + 1);
      return i;
    };
    const fwd = (s: number) => list.push(F(s, take(next.f, s)));
    // A whole backward (B with no W later), or its input half (its W queued for later).
    const bwd = (s: number, split: boolean) => {
      const i = take(next.b, s);
      list.push(B(s, i));
      if (split) pendingW.push([s, i]);
      else take(next.w, s);
    };
    const weight = () => {
      const w = pendingW.shift();
      if (w) list.push(W(w[0], w[1]));
    };
    for (let i = 0; i < (p - r - 1) * 2; i++) fwd(down);
    for (let i = 0; i < r + 1; i++) (fwd(down), fwd(up));
    for (let i = 0; i < p - r - 1; i++) (bwd(up, true), weight(), fwd(up));
    for (let i = 0; i < m - 2 * p + r + 1; i++) {
      // F of the down stage with B of the up one, then F of the up stage with B of the down one.
      fwd(down);
      bwd(up, false);
      fwd(up);
      bwd(down, false);
    }
    for (let i = 0; i < p - r - 1; i++) (bwd(up, false), fwd(up), bwd(down, false));
    let split = false;
    const half = Math.floor((r + 1) / 2);
    for (let i = 0; i < r + 1; i++) {
      if (i === half && r % 2 === 1) split = true;
      bwd(up, split);
      if (i === half && r % 2 === 0) split = true;
      bwd(down, split);
    }
    for (let i = 0; i < p - r - 1; i++) (weight(), bwd(down, split));
    while (pendingW.length) weight();
    return list;
  });
  return table('dualpipev', p, m, 2, actions, vPlacement(p));
};

/** Forward passes only (evaluation): each rank runs its stages' forwards as soon as inputs are ready. */
export const forwardOnly: ScheduleFn = (o) => {
  const { p, m, v } = check(o, 'forward-only');
  const placement = o.placement ?? loopedPlacement(p, p * v);
  if (placement.length !== p * v) throw new ScheduleError(`forward-only: a placement of ${placement.length} stages for ${p} ranks x ${v} stages`);
  return greedy(
    'forward-only',
    p,
    m,
    v,
    false,
    false,
    (ready) => ready.filter((a) => a.op === 'F').sort((a, b) => a.mb - b.mb || a.stage - b.stage)[0],
    placement,
  );
};

/** Stages per rank a schedule runs with unless told otherwise: 2 for the V schedules, else 1. */
export function scheduleStagesPerRank(fn: ScheduleFn): number {
  return fn === zbV || fn === dualPipeV ? 2 : 1;
}

const registry = new Map<string, ScheduleFn>([
  ['gpipe', gpipe],
  ['1f1b', oneF1B],
  ['interleaved-1f1b', interleaved1F1B],
  ['zb-h1', zbH1],
  ['zb-v', zbV],
  ['dualpipev', dualPipeV],
]);

/** Makes a schedule available by name (to `Pipeline`, and to the examples' `--schedule`). */
export function registerSchedule(name: string, fn: ScheduleFn): void {
  if (!/^[a-z0-9][a-z0-9._-]*$/i.test(name)) throw new ScheduleError(`schedule name '${name}' must be letters, digits, '.', '_' or '-'`);
  registry.set(name.toLowerCase(), fn);
}

/** The schedule registered under `name`. */
export function getSchedule(name: string): ScheduleFn {
  const fn = registry.get(name.toLowerCase());
  if (!fn) throw new ScheduleError(`unknown schedule '${name}': known schedules are ${scheduleNames().join(', ')}`);
  return fn;
}

/** Names of the registered schedules. */
export function scheduleNames(): string[] {
  return [...registry.keys()];
}
