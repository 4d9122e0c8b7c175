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
  /** Stages per rank (interleaved and V schedules; default 1). */
  stagesPerRank?: number;
  /** Where each stage lives, for schedules that follow a given placement (forward-only runs). */
  placement?: number[];
}

/** The looped placement: stage s on rank s % p (GPipe, 1F1B, interleaved). */
export const loopedPlacement = (p: number, stages: number) => Array.from({ length: stages }, (_, s) => s % p);

/** The V placement of 2p stages: rank r holds stages r and 2p - 1 - r (ZB-V, DualPipeV). */
export const vPlacement = (p: number) => Array.from({ length: 2 * p }, (_, s) => (s < p ? s : 2 * p - 1 - s));

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

/** One line per rank: `rank 0: 0F0 0SEND_F0 0F1 ...`. */
export function formatTable(t: ScheduleTable): string {
  return t.actions.map((list, r) => `rank ${r}: ${list.map(formatAction).join(' ')}`).join('\n');
}

/** Whether a stage's backward in PyTorch's notation was written as input-only (I) or whole (B, BW). */
type PytorchBackward = 'I' | 'B';

/**
 * One cell of torch.distributed.pipelining's table notation: `2F0`, `2I0` (the input-gradient
 * backward, whose `W` comes later), `2W0`, `2B0` or `2BW0` (a whole backward), the sends and
 * receives, `(2F0;1B1)OVERLAP_F_B` (two actions, run one after the other here), or empty (an idle
 * slot). Returns the actions, and how each backward was written.
 */
function parsePytorchCell(cell: string, written: Map<string, PytorchBackward>): Action[] {
  const c = cell.trim();
  if (c === '' || c.toLowerCase() === 'none') return [];
  const overlap = /^\((.*)\)OVERLAP_F_B$/.exec(c);
  if (overlap) return overlap[1]!.split(';').flatMap((part) => parsePytorchCell(part, written));
  if (c === 'STEP' || c === 'REDUCE_GRAD') return [];
  const m = /^(\d+)(F|I|W|B|BW|SEND_F|RECV_F|SEND_B|RECV_B)(\d+)$/.exec(c);
  if (!m) {
    throw new ScheduleError(`cannot parse '${cell}' as an action of torch.distributed.pipelining: expected <stage><F|I|W|B|BW|SEND_F|RECV_F|SEND_B|RECV_B><micro-batch>, (a;b)OVERLAP_F_B, or an empty cell`);
  }
  const [stage, mb] = [Number(m[1]), Number(m[3])];
  const op = m[2]!;
  if (op === 'I' || op === 'B' || op === 'BW') {
    written.set(key(stage, mb), op === 'I' ? 'I' : 'B');
    return [act('B', stage, mb)];
  }
  return [act(op as Op, stage, mb)];
}

/**
 * Parses a schedule table: either the text of `formatTable` (one `rank N: actions...` line per rank),
 * or torch.distributed.pipelining's notation, one comma-separated row per rank (as its CSV dumps),
 * with `I`/`W` for a split backward, `B` or `BW` for a whole one, overlapped pairs and empty cells.
 * Stages are placed as the actions say; stage and micro-batch counts are inferred unless given.
 */
export function parseTable(text: string, o: { name?: string; stages?: number; microbatches?: number } = {}): ScheduleTable {
  const lines = text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  const actions: Action[][] = [];
  const written = new Map<string, PytorchBackward>();
  const pytorch = lines.length > 0 && !/^rank\s+\d+\s*:/.test(lines[0]!);
  for (const line of lines) {
    if (pytorch) {
      actions.push(line.split(',').flatMap((cell) => parsePytorchCell(cell, written)));
      continue;
    }
    const m = /^rank\s+(\d+)\s*:(.*)$/.exec(line);
    if (!m) throw new ScheduleError(`cannot parse schedule line '${line}': expected 'rank <n>: <actions>'`);
    const r = Number(m[1]);
    if (r !== actions.length) throw new ScheduleError(`schedule lines must list ranks 0, 1, 2, ... in order; found rank ${r} where rank ${actions.length} was expected`);
    actions.push(m[2]!.split(/\s+/).filter(Boolean).map(parseAction));
  }
  const hasW = new Set(actions.flatMap((l) => l.filter((a) => a.op === 'W').map((a) => key(a.stage, a.mb))));
  for (const [k, how] of written) {
    const [s, mb] = k.split(':');
    if (how === 'I' && !hasW.has(k)) throw new ScheduleError(`${s}I${mb} computes only the input gradient, but the table has no ${s}W${mb} for the weights`);
    if (how === 'B' && hasW.has(k)) throw new ScheduleError(`${s}B${mb} is a whole backward, but the table also has ${s}W${mb}: write ${s}I${mb} for a split one`);
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
