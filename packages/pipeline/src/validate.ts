import { ScheduleError } from './errors.js';
import { formatAction, key, runLists, type ScheduleTable } from './ir.js';

/** Where a fault is: rank and position in its list. */
export interface Mark {
  rank: number;
  index: number;
}

/**
 * The table as a grid, one row per position and one column per rank (what each rank does at its
 * n-th action), with the marked cells in brackets. Long tables are cut around the marks.
 */
export function formatGrid(t: ScheduleTable, marks: Mark[] = [], context = 6): string {
  const rows = Math.max(0, ...t.actions.map((l) => l.length));
  const cell = (r: number, i: number) => {
    const a = t.actions[r]?.[i];
    const text = a ? formatAction(a) : '';
    return marks.some((m) => m.rank === r && m.index === i) ? `[${text}]` : text;
  };
  const width = Math.max(8, ...t.actions.flatMap((l, r) => l.map((_, i) => cell(r, i).length))) + 2;
  let show = (_: number) => true;
  if (marks.length && rows > 2 * context + 4) show = (i) => marks.some((m) => Math.abs(m.index - i) <= context);
  const lines = ['step'.padEnd(6) + t.actions.map((_, r) => `rank ${r}`.padEnd(width)).join('').trimEnd()];
  let skipped = false;
  for (let i = 0; i < rows; i++) {
    if (!show(i)) {
      if (!skipped) lines.push('...');
      skipped = true;
      continue;
    }
    skipped = false;
    lines.push(String(i).padEnd(6) + t.actions.map((_, r) => cell(r, i).padEnd(width)).join('').trimEnd());
  }
  return lines.join('\n');
}

function fail(t: ScheduleTable, msg: string, marks: Mark[] = []): never {
  throw new ScheduleError(`schedule '${t.name}': ${msg}`, formatGrid(t, marks));
}

/** Options of `validate`. */
export interface ValidateOptions {
  /** Whether the table trains (F, B once each per stage and micro-batch) or only runs forward. Default true. */
  backward?: boolean;
}

/**
 * Checks a table before it runs: every stage and micro-batch's F and B exactly once (W at most once,
 * after B), each action on the rank that holds its stage, the sends and receives that stages on
 * different ranks need (and no others), local dependencies in order, STEP last, and no deadlock when
 * every rank runs its list with non-blocking sends and blocking receives. Throws a ScheduleError
 * whose message ends with the step-by-rank grid, the fault marked.
 */
export function validate(t: ScheduleTable, o: ValidateOptions = {}): void {
  const withBackward = o.backward ?? true;
  const S = t.stages;
  const m = t.microbatches;
  if (!Number.isInteger(t.ranks) || t.ranks < 1 || t.actions.length !== t.ranks) {
    throw new ScheduleError(`schedule '${t.name}': ${t.ranks} ranks declared, ${t.actions.length} action lists found`);
  }
  if (!Number.isInteger(S) || S < 1 || t.placement.length !== S) throw new ScheduleError(`schedule '${t.name}': ${S} stages declared, placement lists ${t.placement.length}`);
  if (!Number.isInteger(m) || m < 1) throw new ScheduleError(`schedule '${t.name}': the number of micro-batches must be a positive integer, found ${m}`);
  t.placement.forEach((r, s) => {
    if (!Number.isInteger(r) || r < 0 || r >= t.ranks) throw new ScheduleError(`schedule '${t.name}': stage ${s} is placed on rank ${r}, outside 0..${t.ranks - 1}`);
  });
  const remote = (s: number, other: number) => other >= 0 && other < S && t.placement[other] !== t.placement[s];

  // Each action on the rank holding its stage.
  t.actions.forEach((list, r) =>
    list.forEach((a, i) => {
      if (a.op !== 'STEP' && t.placement[a.stage] != null && t.placement[a.stage] !== r) {
        fail(t, `rank ${r} runs ${formatAction(a)} but stage ${a.stage} is on rank ${t.placement[a.stage]}`, [{ rank: r, index: i }]);
      }
    }),
  );

  // Where each action is; repeated actions, communication without a peer.
  const where = new Map<string, Mark>();
  const at = (op: string, s: number, mb: number) => where.get(`${op}:${key(s, mb)}`);
  t.actions.forEach((list, r) =>
    list.forEach((a, i) => {
      if (a.op === 'STEP') {
        if (i !== list.length - 1) fail(t, `STEP must be the last action of rank ${r}`, [{ rank: r, index: i }]);
        return;
      }
      if (!Number.isInteger(a.stage) || a.stage < 0 || a.stage >= S) fail(t, `${formatAction(a)} names stage ${a.stage}; stages are 0..${S - 1}`, [{ rank: r, index: i }]);
      if (!Number.isInteger(a.mb) || a.mb < 0 || a.mb >= m) fail(t, `${formatAction(a)} names micro-batch ${a.mb}; micro-batches are 0..${m - 1}`, [{ rank: r, index: i }]);
      if (!withBackward && a.op !== 'F' && a.op !== 'SEND_F' && a.op !== 'RECV_F') fail(t, `${formatAction(a)} in a forward-only table`, [{ rank: r, index: i }]);
      const k = `${a.op}:${key(a.stage, a.mb)}`;
      const prev = where.get(k);
      if (prev) fail(t, `${formatAction(a)} appears twice`, [prev, { rank: r, index: i }]);
      where.set(k, { rank: r, index: i });
      if ((a.op === 'RECV_F' && !remote(a.stage, a.stage - 1)) || (a.op === 'SEND_F' && !remote(a.stage, a.stage + 1)) ||
          (a.op === 'RECV_B' && !remote(a.stage, a.stage + 1)) || (a.op === 'SEND_B' && !remote(a.stage, a.stage - 1))) {
        fail(t, `${formatAction(a)} has no peer: the neighbouring stage is ${a.op.endsWith('_F') === a.op.startsWith('SEND') ? 'after' : 'before'} it on the same rank or does not exist`, [{ rank: r, index: i }]);
      }
    }),
  );

  // Missing work, and missing communication.
  for (let s = 0; s < S; s++) {
    for (let mb = 0; mb < m; mb++) {
      const need: [string, boolean][] = [
        ['F', true],
        ['B', withBackward],
        ['RECV_F', remote(s, s - 1)],
        ['SEND_F', remote(s, s + 1)],
        ['RECV_B', withBackward && remote(s, s + 1)],
        ['SEND_B', withBackward && remote(s, s - 1)],
      ];
      for (const [op, needed] of need) {
        if (needed && !at(op, s, mb)) {
          const hint = op.includes('_') ? ' (withCommunication() adds the sends and receives a compute-only table needs)' : '';
          fail(t, `${s}${op}${mb} is missing from rank ${t.placement[s]}${hint}`);
        }
      }
    }
  }

  // Local dependencies: what an action consumes must come earlier on the same rank.
  const before = (op: string, s: number, mb: number, r: number, i: number) => {
    const w = at(op, s, mb);
    return w != null && w.rank === r && w.index < i;
  };
  t.actions.forEach((list, r) =>
    list.forEach((a, i) => {
      const s = a.stage;
      const mb = a.mb;
      const needs: string[] = [];
      if (a.op === 'F' && s > 0) needs.push(remote(s, s - 1) ? 'RECV_F' : 'F@prev');
      if (a.op === 'B') {
        needs.push('F');
        if (s < S - 1) needs.push(remote(s, s + 1) ? 'RECV_B' : 'B@next');
      }
      if (a.op === 'W' || a.op === 'SEND_B') needs.push('B');
      if (a.op === 'SEND_F') needs.push('F');
      for (const n of needs) {
        const [op, rel] = n.split('@') as [string, string | undefined];
        const ss = rel === 'prev' ? s - 1 : rel === 'next' ? s + 1 : s;
        if (!before(op, ss, mb, r, i)) {
          const dep = `${ss}${op}${mb}`;
          const w = at(op, ss, mb);
          fail(t, `${formatAction(a)} on rank ${r} needs ${dep} first, ${w ? 'which comes later' : 'which is missing'}`, w ? [{ rank: r, index: i }, w] : [{ rank: r, index: i }]);
        }
      }
    }),
  );

  // Deadlock: run every list with non-blocking sends and blocking receives.
  const sent = new Set<string>();
  const stuck = runLists(t, (_, a) => {
    if (a.op === 'RECV_F' && !sent.has(`F:${key(a.stage - 1, a.mb)}`)) return false;
    if (a.op === 'RECV_B' && !sent.has(`B:${key(a.stage + 1, a.mb)}`)) return false;
    if (a.op === 'SEND_F') sent.add(`F:${key(a.stage, a.mb)}`);
    if (a.op === 'SEND_B') sent.add(`B:${key(a.stage, a.mb)}`);
    return true;
  });
  if (stuck.length) {
    const what = stuck.map((s) => `rank ${s.rank} waits at ${formatAction(t.actions[s.rank]![s.index]!)}`).join(', ');
    fail(t, `deadlock: ${what}, and no rank can send what they wait for`, stuck);
  }
}

/** The stages a rank holds, in order. */
export function stagesOf(t: ScheduleTable, rank: number): number[] {
  return t.placement.flatMap((r, s) => (r === rank ? [s] : []));
}
