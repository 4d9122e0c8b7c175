// A connection's holds alone, in-process: a host that records when reading stops and restarts and
// which messages are read on with which tail. Timers are the fake ones of vitest.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Kind, type DataFrame } from '../src/transport/frame.js';
import { Holds, type HoldHost } from '../src/transport/holds.js';

const frame = (tag: number): DataFrame => ({ kind: Kind.Data, comm: 'w', tag, dtype: 0, bytes: 1 << 20, chunks: 1, meta: null, payload: new Uint8Array(0) });

class Host implements HoldHost {
  events: string[] = [];
  /** Set to a frame to meet, and hold, the next large message while the tail is read on. */
  holdNext: DataFrame | null = null;
  holds!: Holds;
  stopReading(on: boolean): void {
    this.events.push(on ? 'stop' : 'read');
  }
  readOn(f: DataFrame, tail: Buffer | null): void {
    this.events.push(`readOn ${f.tag}${tail ? ` +${tail.length}` : ''}`);
    if (this.holdNext) {
      const next = this.holdNext;
      this.holdNext = null;
      this.holds.hold(next);
    }
  }
}

function setup(holdMs = 50) {
  const host = new Host();
  const holds = new Holds(host, { holdMs, peerTimeoutMs: 1000 });
  host.holds = holds;
  holds.enabled = true;
  return { host, holds };
}

describe('Holds', () => {
  beforeEach(() => void vi.useFakeTimers());
  afterEach(() => void vi.useRealTimers());

  it('are allowed only once enabled, with a hold time, and while the sender is idle', () => {
    const { holds } = setup();
    expect(holds.allowed(true)).toBe(true);
    expect(holds.allowed(false)).toBe(false);
    holds.enabled = false;
    expect(holds.allowed(true)).toBe(false);
    expect(setup(0).holds.allowed(true)).toBe(false);
  });

  it('stop reading until the receive is posted, then read the message on with its tail', () => {
    const { host, holds } = setup();
    holds.hold(frame(1));
    holds.keepTail(Buffer.alloc(10));
    expect(holds.holding).toBe(true);
    holds.noteReceive(false, true); // a receive that found its message: not this one
    expect(host.events).toEqual(['stop']);
    holds.noteReceive(true, true);
    expect(host.events).toEqual(['stop', 'readOn 1 +10', 'read']);
    expect(holds.holding).toBe(false);
    vi.advanceTimersByTime(1000); // the timer was cleared: nothing more happens
    expect(host.events).toHaveLength(3);
    expect(holds.allowed(true)).toBe(true);
  });

  it('run out after holdMs (at most half the peer timeout), then stay off until a receive into a buffer', () => {
    const { host, holds } = setup(5000);
    holds.hold(frame(2));
    vi.advanceTimersByTime(499);
    expect(host.events).toEqual(['stop']);
    vi.advanceTimersByTime(1); // min(5000, 1000 / 2)
    expect(host.events).toEqual(['stop', 'readOn 2', 'read']);
    expect(holds.allowed(true)).toBe(false);
    holds.noteReceive(false, false);
    expect(holds.allowed(true)).toBe(false);
    holds.noteReceive(false, true);
    expect(holds.allowed(true)).toBe(true);
  });

  it('end when a receive without a buffer waits (it would get the read memory anyway)', () => {
    const { host, holds } = setup();
    holds.hold(frame(3));
    holds.noteReceive(true, false);
    expect(host.events).toEqual(['stop', 'readOn 3', 'read']);
    expect(holds.allowed(true)).toBe(false);
  });

  it('keep reading stopped when the tail read on holds the next message', () => {
    const { host, holds } = setup();
    holds.hold(frame(4));
    host.holdNext = frame(5);
    holds.release();
    expect(host.events).toEqual(['stop', 'readOn 4', 'stop']);
    expect(holds.holding).toBe(true);
    holds.noteReceive(true, true);
    expect(host.events).toEqual(['stop', 'readOn 4', 'stop', 'readOn 5', 'read']);
  });

  it('drop the held message unread when the connection dies', () => {
    const { host, holds } = setup();
    holds.hold(frame(6));
    holds.drop();
    vi.advanceTimersByTime(1000);
    holds.noteReceive(true, true);
    expect(host.events).toEqual(['stop']);
    expect(holds.holding).toBe(false);
  });

  it('hold one message at a time', () => {
    const { holds } = setup();
    holds.hold(frame(7));
    expect(() => holds.hold(frame(8))).toThrow('one message at a time');
  });
});
