import { ScheduleError } from './errors.js';

/**
 * What a rank does, in order. Computation:
 * - `F`  forward of one micro-batch through one stage;
 * - `B`  backward of it: the input gradient, and the weight gradients too unless a `W` for the same
 *        stage and micro-batch appears in the table (zero-bubble schedules split the two);
 * - `W`  the deferred weight gradients.
 * Communication between stages on different ranks (non-blocking sends; a receive waits):
 * - `SEND_F` stage s sends its output to stage s+1, `RECV_F` stage s receives its input from s-1;
 * - `SEND_B` stage s sends its input gradient to s-1, `RECV_B` stage s receives its output gradient from s+1.
 * And `STEP`: gradients are final (allreduced among data-parallel replicas) and the optimizer steps.
 */
export type Op = 'F' | 'B' | 'W' | 'SEND_F' | 'RECV_F' | 'SEND_B' | 'RECV_B' | 'STEP';

export const COMPUTE_OPS: readonly Op[] = ['F', 'B', 'W'];
export const COMM_OPS: readonly Op[] = ['SEND_F', 'RECV_F', 'SEND_B', 'RECV_B'];

/** One entry of a schedule: an operation on a stage and micro-batch (both -1 for STEP). */
export interface Action {
  readonly op: Op;
  readonly stage: number;
  readonly mb: number;
}

/**
 * A schedule as data: for every rank, the ordered list of actions it performs in one training step.
 * `placement[s]` is the rank holding stage s; stage 0 takes the input, stage `stages - 1` the loss.
 */
export interface ScheduleTable {
  /** A name for messages and traces. */
  name: string;
  /** Number of ranks in the pipeline. */
  ranks: number;
  /** Number of stages (ranks x virtual stages per rank). */
  stages: number;
  /** Number of micro-batches per step. */
  microbatches: number;
  /** Rank of each stage. */
  placement: number[];
  /** Each rank's actions in order. */
  actions: Action[][];
}

/** What a schedule function is given. */
export interface ScheduleOptions {
  /** Ranks in the pipeline. */
  ranks: number;
  /** Micro-batches per step. */
  microbatches: number;
  /** Stages per rank (interleaved schedules; default 1). */
  stagesPerRank?: number;
}

/** A schedule: a function from the pipeline's shape to a table. */
export type ScheduleFn = (o: ScheduleOptions) => ScheduleTable;

export const act = (op: Op, stage: number, mb: number): Action => ({ op, stage, mb });
export const F = (stage: number, mb: number) => act('F', stage, mb);
export const B = (stage: number, mb: number) => act('B', stage, mb);
export const W = (stage: number, mb: number) => act('W', stage, mb);
export const STEP: Action = Object.freeze({ op: 'STEP', stage: -1, mb: -1 });

/** The compact text form: `2F0` (stage 2, forward, micro-batch 0), `1SEND_B3`, `STEP`. */
export function formatAction(a: Action): string {
  return a.op === 'STEP' ? 'STEP' : `${a.stage}${a.op}${a.mb}`;
}

const ACTION_RE = /^(\d+)(F|B|W|SEND_F|RECV_F|SEND_B|RECV_B)(\d+)$/;

/** Parses the compact text form of one action. */
export function parseAction(text: string): Action {
  const t = text.trim();
  if (t === 'STEP') return STEP;
  const m = ACTION_RE.exec(t);
  if (!m) {
    throw new ScheduleError(
      `cannot parse action '${text}': expected <stage><op><micro-batch> with op one of F, B, W, SEND_F, RECV_F, SEND_B, RECV_B (e.g. 2F0, 1SEND_B3), or STEP`,
    );
  }
  return act(m[2] as Op, Number(m[1]), Number(m[3]));
}

/** Whether two actions are the same. */
export const sameAction = (a: Action, b: Action) => a.op === b.op && a.stage === b.stage && a.mb === b.mb;

/** One line per rank: `rank 0: 0F0 0SEND_F0 0F1 ...`. */
export function formatTable(t: ScheduleTable): string {
  return t.actions.map((list, r) => `rank ${r}: ${list.map(formatAction).join(' ')}`).join('\n');
}

/**
 * Parses the text of `formatTable` (one `rank N: actions...` line per rank). Stages are placed as the
 * actions say; stage and micro-batch counts are inferred unless given.
 */
export function parseTable(text: string, o: { name?: string; stages?: number; microbatches?: number } = {}): ScheduleTable {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const actions: Action[][] = [];
  for (const line of lines) {
    const m = /^rank\s+(\d+)\s*:(.*)$/.exec(line);
    if (!m) throw new ScheduleError(`cannot parse schedule line '${line}': expected 'rank <n>: <actions>'`);
    const r = Number(m[1]);
    if (r !== actions.length) throw new ScheduleError(`schedule lines must list ranks 0, 1, 2, ... in order; found rank ${r} where rank ${actions.length} was expected`);
    actions.push(m[2]!.split(/\s+/).filter(Boolean).map(parseAction));
  }
  let maxStage = -1;
  let maxMb = -1;
  const placement: number[] = [];
  actions.forEach((list, r) =>
    list.forEach((a) => {
      if (a.op === 'STEP') return;
      maxStage = Math.max(maxStage, a.stage);
      maxMb = Math.max(maxMb, a.mb);
      if (placement[a.stage] != null && placement[a.stage] !== r) {
        throw new ScheduleError(`stage ${a.stage} appears on rank ${placement[a.stage]} and on rank ${r}: a stage lives on one rank`);
      }
      placement[a.stage] = r;
    }),
  );
  const stages = o.stages ?? maxStage + 1;
  for (let s = 0; s < stages; s++) if (placement[s] == null) throw new ScheduleError(`stage ${s} has no actions on any rank`);
  return { name: o.name ?? 'parsed', ranks: actions.length, stages, microbatches: o.microbatches ?? maxMb + 1, placement, actions };
}

/** Whether the table splits backward into B and W for this stage and micro-batch. */
export function splitBackward(t: ScheduleTable): Set<string> {
  const out = new Set<string>();
  for (const list of t.actions) for (const a of list) if (a.op === 'W') out.add(key(a.stage, a.mb));
  return out;
}

/** A map key for a stage and micro-batch. */
export const key = (stage: number, mb: number) => `${stage}:${mb}`;

/**
 * Adds the sends and receives a compute-only table needs: a receive just before the computation that
 * consumes it, a send just after the one that produces it, only between stages on different ranks;
 * and a STEP at the end of every rank's list unless `step` is false. Tables that already hold
 * communication are returned with only the STEP added.
 */
export function withCommunication(t: ScheduleTable, o: { step?: boolean } = {}): ScheduleTable {
  const remote = (s: number, other: number) => other >= 0 && other < t.stages && t.placement[other] !== t.placement[s];
  const hasComm = t.actions.some((l) => l.some((a) => COMM_OPS.includes(a.op)));
  const actions = t.actions.map((list) => {
    const out: Action[] = [];
    for (const a of list) {
      if (a.op === 'STEP') continue;
      if (!hasComm && a.op === 'F' && remote(a.stage, a.stage - 1)) out.push(act('RECV_F', a.stage, a.mb));
      if (!hasComm && a.op === 'B' && remote(a.stage, a.stage + 1)) out.push(act('RECV_B', a.stage, a.mb));
      out.push(a);
      if (!hasComm && a.op === 'F' && remote(a.stage, a.stage + 1)) out.push(act('SEND_F', a.stage, a.mb));
      if (!hasComm && a.op === 'B' && remote(a.stage, a.stage - 1)) out.push(act('SEND_B', a.stage, a.mb));
    }
    if (o.step !== false) out.push(STEP);
    return out;
  });
  return { ...t, actions };
}

/** The same table without communication and STEP actions. */
export function computeOnly(t: ScheduleTable): ScheduleTable {
  return { ...t, actions: t.actions.map((l) => l.filter((a) => COMPUTE_OPS.includes(a.op))) };
}

/**
 * Runs every rank's list in order, as far as it can: `tryRun(rank, action)` performs the action and
 * returns true, or returns false when the action must wait for another rank. Returns where ranks
 * are left waiting for ever (empty when every list ran to its end).
 */
export function runLists(t: ScheduleTable, tryRun: (rank: number, a: Action) => boolean): { rank: number; index: number }[] {
  const pos = new Array<number>(t.ranks).fill(0);
  for (;;) {
    let progress = false;
    for (let r = 0; r < t.ranks; r++) {
      const list = t.actions[r]!;
      while (pos[r]! < list.length && tryRun(r, list[pos[r]!]!)) {
        pos[r]!++;
        progress = true;
      }
    }
    const stuck = pos.map((index, rank) => ({ rank, index })).filter((s) => s.index < t.actions[s.rank]!.length);
    if (!stuck.length || !progress) return stuck;
  }
}
