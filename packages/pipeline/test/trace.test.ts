import { describe, expect, it } from 'vitest';
import { costsFromTrace, getSchedule, simulate, simulationEvents, withCommunication, type TraceEvent } from '../src/index.js';

const ev = (rank: number, op: TraceEvent['op'], stage: number, mb: number, start: number, end: number): TraceEvent => ({
  rank,
  name: `${stage}${op}${mb}`,
  op,
  stage,
  mb,
  step: 0,
  track: op === 'F' || op === 'B' || op === 'W' || op === 'STEP' ? 'compute' : 'comm',
  start,
  end,
});

describe('costs from a trace', () => {
  it('averages each action kind per stage, and takes the slowest rank for the optimizer step', () => {
    const events = [
      ev(0, 'F', 0, 0, 0, 4),
      ev(0, 'F', 0, 1, 10, 16),
      ev(1, 'F', 1, 0, 5, 8),
      ev(0, 'B', 0, 0, 20, 30),
      ev(1, 'B', 1, 0, 8, 16),
      ev(1, 'SEND_B', 1, 0, 16, 17),
      ev(0, 'STEP', 0, 0, 40, 42),
      ev(0, 'STEP', 0, 0, 90, 94),
      ev(1, 'STEP', 1, 0, 40, 45),
    ];
    expect(costsFromTrace(events, 2)).toEqual({ F: [5, 3], B: [10, 8], W: [0, 0], step: 5 });
  });

  it('gives back the costs a simulation was run with (a round trip through its timeline)', () => {
    const table = withCommunication(getSchedule('1f1b')({ ranks: 2, microbatches: 4 }));
    const costs = { F: [2, 3], B: [5, 4], W: 0, step: 1.5 };
    const back = costsFromTrace(simulationEvents(simulate(table, costs)), 2);
    expect(back).toEqual({ F: [2, 3], B: [5, 4], W: [0, 0], step: 1.5 });
  });
});
