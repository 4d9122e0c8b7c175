import { ScheduleError } from './errors.js';
import { B, F, W, key, type Action, type ScheduleFn, type ScheduleOptions, type ScheduleTable } from './ir.js';

function check(o: ScheduleOptions, name: string): { p: number; m: number; v: number } {
  const p = o.ranks;
  const m = o.microbatches;
  const v = o.stagesPerRank ?? 1;
  for (const [what, n] of [['ranks', p], ['microbatches', m], ['stagesPerRank', v]] as const) {
    if (!Number.isInteger(n) || n < 1) throw new ScheduleError(`${name}: ${what} must be a positive integer, found ${n}`);
  }
  return { p, m, v };
}

function table(name: string, p: number, m: number, v: number, actions: Action[][]): ScheduleTable {
  const stages = p * v;
  return { name, ranks: p, stages, microbatches: m, placement: Array.from({ length: stages }, (_, s) => s % p), actions };
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
function greedy(name: string, p: number, m: number, v: number, withBackward: boolean, split: boolean, pick: Pick): ScheduleTable {
  const S = p * v;
  const end = new Map<string, number>(); // 'F:s:mb' -> end time
  const actions: Action[][] = Array.from({ length: p }, () => []);
  const todo: Action[][] = Array.from({ length: p }, (_, r) => {
    const out: Action[] = [];
    for (let s = r; s < S; s += p) {
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
  return table(name, p, m, v, actions);
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

/** Forward passes only (evaluation): each rank runs its stages' forwards as soon as inputs are ready. */
export const forwardOnly: ScheduleFn = (o) => {
  const { p, m, v } = check(o, 'forward-only');
  return greedy('forward-only', p, m, v, false, false, (ready) =>
    ready.filter((a) => a.op === 'F').sort((a, b) => a.mb - b.mb || a.stage - b.stage)[0],
  );
};

const registry = new Map<string, ScheduleFn>([
  ['gpipe', gpipe],
  ['1f1b', oneF1B],
  ['interleaved-1f1b', interleaved1F1B],
  ['zb-h1', zbH1],
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
