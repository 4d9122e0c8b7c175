import type { Communicator } from '@hpdl/comm';
import type { Op } from './ir.js';
import { formatAction } from './ir.js';
import type { Costs, Simulation } from './simulate.js';

/** What a trace event records: an action of the table, or a stage's gradients averaged among replicas. */
export type TraceOp = Op | 'REDUCE';

/** One timed action on one rank. Times in microseconds (wall clock for runs, any unit for simulations). */
export interface TraceEvent {
  rank: number;
  name: string;
  op: TraceOp;
  stage: number;
  /** The micro-batch (-1 for a gradient reduction, which covers them all). */
  mb: number;
  step: number;
  /** compute (F, B, W, STEP), comm (sends and receives), reduce (gradient reductions among replicas, beside the rest). */
  track: 'compute' | 'comm' | 'reduce';
  start: number;
  end: number;
}

const TRACE_TAG = 2 ** 31 - 2;

/**
 * Collects every rank's events on rank 0 of `comm` (collective: every rank calls it). Returns the
 * merged list on rank 0 and null elsewhere.
 */
export async function gatherTrace(comm: Communicator, events: TraceEvent[]): Promise<TraceEvent[] | null> {
  if (comm.rank !== 0) {
    await comm.sendObject(events, 0, TRACE_TAG);
    return null;
  }
  const all = [...events];
  for (let r = 1; r < comm.size; r++) all.push(...(await comm.recvObject<TraceEvent[]>(r, TRACE_TAG)));
  return all.sort((a, b) => a.start - b.start);
}

/**
 * Chrome trace-event JSON (open in Perfetto or chrome://tracing): one process per rank, a compute
 * track and a communication track, times relative to the first event.
 */
export function toChromeTrace(events: TraceEvent[], o: { label?: (rank: number) => string } = {}): string {
  const t0 = Math.min(...events.map((e) => e.start));
  const ranks = [...new Set(events.map((e) => e.rank))].sort((a, b) => a - b);
  const meta = ranks.flatMap((r) => [
    { name: 'process_name', ph: 'M', pid: r, tid: 0, args: { name: o.label?.(r) ?? `rank ${r}` } },
    { name: 'process_sort_index', ph: 'M', pid: r, tid: 0, args: { sort_index: r } },
    { name: 'thread_name', ph: 'M', pid: r, tid: 0, args: { name: 'compute' } },
    { name: 'thread_name', ph: 'M', pid: r, tid: 1, args: { name: 'communication' } },
    ...(events.some((e) => e.rank === r && e.track === 'reduce') ? [{ name: 'thread_name', ph: 'M', pid: r, tid: 2, args: { name: 'gradient reduction' } }] : []),
  ]);
  const spans = events.map((e) => ({
    name: e.name,
    cat: e.track,
    ph: 'X',
    pid: e.rank,
    tid: TRACK_TID[e.track],
    ts: round(e.start - t0),
    dur: round(Math.max(0, e.end - e.start)),
    args: { op: e.op, stage: e.stage, microbatch: e.mb, step: e.step },
  }));
  return JSON.stringify({ traceEvents: [...meta, ...spans], displayTimeUnit: 'ms' });
}

const round = (x: number) => Math.round(x * 1000) / 1000;
const TRACK_TID = { compute: 0, comm: 1, reduce: 2 } as const;

const COLORS: Record<string, string> = {
  F: '#4e79a7',
  B: '#59a14f',
  W: '#f28e2b',
  STEP: '#e15759',
  SEND_F: '#bab0ac',
  RECV_F: '#d4cfc9',
  SEND_B: '#bab0ac',
  RECV_B: '#d4cfc9',
  REDUCE: '#b07aa1',
};

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * An SVG timeline: one row per rank (compute above, communication in a thin band below), each
 * action a box labelled with its micro-batch, coloured by kind.
 */
export function timelineSvg(events: TraceEvent[], o: { title?: string; width?: number; unit?: string } = {}): string {
  const width = o.width ?? 1200;
  const left = 70;
  const right = 20;
  const top = o.title ? 40 : 20;
  const rowH = 34;
  const commH = 8;
  const ranks = [...new Set(events.map((e) => e.rank))].sort((a, b) => a - b);
  const t0 = events.length ? Math.min(...events.map((e) => e.start)) : 0;
  const t1 = events.length ? Math.max(...events.map((e) => e.end)) : 1;
  const span = t1 - t0 || 1;
  const x = (t: number) => left + ((t - t0) / span) * (width - left - right);
  const height = top + ranks.length * (rowH + commH + 10) + 40;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="100%" height="100%" fill="white"/>`,
  ];
  if (o.title) out.push(`<text x="${left}" y="22" font-size="14">${esc(o.title)}</text>`);
  ranks.forEach((r, i) => {
    const y = top + i * (rowH + commH + 10);
    out.push(`<text x="8" y="${y + rowH / 2 + 4}">rank ${r}</text>`);
    out.push(`<rect x="${left}" y="${y}" width="${width - left - right}" height="${rowH}" fill="#f5f5f5"/>`);
    for (const e of events) {
      if (e.rank !== r) continue;
      const ex = x(e.start);
      const ew = Math.max(0.5, x(e.end) - ex);
      const color = COLORS[e.op] ?? '#999';
      const title = `<title>${esc(`${e.name} (stage ${e.stage}, micro-batch ${e.mb}): ${(e.end - e.start).toFixed(1)} ${o.unit ?? 'us'}`)}</title>`;
      if (e.track === 'compute') {
        out.push(`<rect x="${ex.toFixed(2)}" y="${y}" width="${ew.toFixed(2)}" height="${rowH}" fill="${color}" stroke="white" stroke-width="0.5">${title}</rect>`);
        if (ew > 14 && e.op !== 'STEP') out.push(`<text x="${(ex + ew / 2).toFixed(2)}" y="${y + rowH / 2 + 4}" text-anchor="middle" fill="white">${e.op}${e.mb}</text>`);
      } else if (e.track === 'comm') {
        out.push(`<rect x="${ex.toFixed(2)}" y="${y + rowH + 2}" width="${ew.toFixed(2)}" height="${commH}" fill="${color}">${title}</rect>`);
      } else {
        // Gradient reductions run beside the rest: a line of their own under the communication band.
        out.push(`<rect x="${ex.toFixed(2)}" y="${y + rowH + commH + 3}" width="${ew.toFixed(2)}" height="4" fill="${color}">${title}</rect>`);
      }
    }
  });
  const ly = height - 18;
  let lx = left;
  const legend: [string, string][] = [['F', 'forward'], ['B', 'backward'], ['W', 'weight gradient'], ['STEP', 'optimizer'], ['RECV_F', 'communication']];
  if (events.some((e) => e.track === 'reduce')) legend.push(['REDUCE', 'gradient reduction']);
  for (const [op, label] of legend) {
    out.push(`<rect x="${lx}" y="${ly - 10}" width="12" height="12" fill="${COLORS[op]}"/><text x="${lx + 16}" y="${ly}">${label}</text>`);
    lx += 30 + label.length * 6.5;
  }
  out.push(`<text x="${width - right}" y="${ly}" text-anchor="end">${span.toFixed(o.unit === 'us' || !o.unit ? 0 : 2)} ${o.unit ?? 'us'}</text>`);
  out.push('</svg>');
  return out.join('\n');
}

/** A simulation's timeline as trace events (times in the simulation's unit). */
export function simulationEvents(sim: Simulation): TraceEvent[] {
  return sim.timeline.map((e) => ({
    rank: e.rank,
    name: formatAction(e.action),
    op: e.action.op,
    stage: e.action.stage,
    mb: e.action.mb,
    step: 0,
    track: e.track,
    start: e.start,
    end: e.end,
  }));
}

/**
 * Per-stage mean costs measured in a trace, for `simulate`. Where the trace has W actions, B is the
 * input-gradient half; where it has none, B is the whole backward and W is 0. `step` is the mean
 * optimizer step of the slowest rank.
 */
export function costsFromTrace(events: TraceEvent[], stages: number): Costs {
  const avg = (ds: number[]) => (ds.length ? ds.reduce((a, b) => a + b, 0) / ds.length : 0);
  const mean = (op: Op) => Array.from({ length: stages }, (_, s) => avg(events.filter((e) => e.op === op && e.stage === s).map((e) => e.end - e.start)));
  const steps = events.filter((e) => e.op === 'STEP');
  const ranks = [...new Set(steps.map((e) => e.rank))];
  const step = Math.max(0, ...ranks.map((r) => avg(steps.filter((e) => e.rank === r).map((e) => e.end - e.start))));
  return { F: mean('F'), B: mean('B'), W: mean('W'), step };
}
