import { describe, expect, it } from 'vitest';
import { runJob } from './helpers.js';

describe('collectives across real processes', () => {
  it.each([1, 2, 3, 4, 5])('every collective matches a local reference at p = %i, sizes 0 to 4 MiB, four element types', async (p) => {
    const r = await runJob('collectives.mjs', p, { env: { HPDL_TIMEOUT_MS: '60000' } });
    expect(r.err.join('\n')).toBe('');
    expect(r.code).toBe(0);
    expect(r.out.filter((l) => /collectives ok/.test(l))).toHaveLength(p);
  }, 120_000);
});

describe('non-blocking collectives', () => {
  it.each([1, 2, 3, 4])('several in flight on one communicator, mixed with blocking ones and messages, equal the blocking calls (p = %i)', async (p) => {
    const r = await runJob('nonblocking.mjs', p, { env: { HPDL_TIMEOUT_MS: '60000' } });
    expect(r.err.join('\n')).toBe('');
    expect(r.code).toBe(0);
    expect(r.reports.filter((x) => x.ok)).toHaveLength(p);
  }, 60_000);

  it('a rank lost with requests pending: every pending request on every survivor fails naming it', async () => {
    const r = await runJob('nonblocking.mjs', 3, { env: { FAULT: 'lost' } });
    expect(r.code).not.toBe(0);
    const ends = r.reports.filter((x) => x.ends);
    expect(ends.map((x) => x.rank).sort()).toEqual([0, 1]);
    for (const x of ends) expect(x.ends).toEqual(['PeerLostError 2', 'PeerLostError 2', 'PeerLostError 2', 'PeerLostError 2']);
  }, 60_000);
});

describe('start-up', () => {
  it.each([2, 3, 4])('rank 0 may send and close as soon as init returns: every rank still joins and receives (p = %i)', async (p) => {
    // Rank 0 used to be ready before the others had the table of where everyone listens.
    const r = await runJob('early.mjs', p, { env: { HPDL_RENDEZVOUS_TIMEOUT_MS: '20000' } });
    expect(r.err.join('\n')).toBe('');
    expect(r.code).toBe(0);
    for (let rank = 1; rank < p; rank++) expect(r.out).toContain(`[${rank}] rank ${rank} got ${rank * 10}`);
  }, 60_000);
});

describe('point to point and sub-communicators', () => {
  it.each([1, 2, 3, 5])('ordering, non-blocking requests, large and empty messages, objects, usage errors, split at p = %i', async (p) => {
    const r = await runJob('p2p.mjs', p, { env: { HPDL_TIMEOUT_MS: '60000' } });
    expect(r.err.join('\n')).toBe('');
    expect(r.code).toBe(0);
    expect(r.out.filter((l) => /p2p ok/.test(l))).toHaveLength(p);
  }, 120_000);

  it('large messages that arrive before their receive wait in the socket, and never hold up others', async () => {
    // A minute-long hold: a message that waited for a hold to run out would time the test out.
    const r = await runJob('holds.mjs', 2, { env: { HPDL_TIMEOUT_MS: '60000', HPDL_HOLD_MS: '60000', HPDL_PEER_TIMEOUT_MS: '200000' } });
    expect(r.err.join('\n')).toBe('');
    expect(r.code).toBe(0);
    expect(r.out.filter((l) => /holds ok/.test(l))).toHaveLength(2);
  }, 30_000);

  it('a hold that runs out reads the message on, and holds come back with the next receive', async () => {
    const r = await runJob('holds-runout.mjs', 2, { env: { HPDL_TIMEOUT_MS: '60000', HPDL_HOLD_MS: '400' } });
    expect(r.err.join('\n')).toBe('');
    expect(r.code).toBe(0);
    expect(r.out.filter((l) => /holds-runout ok/.test(l))).toHaveLength(2);
  }, 30_000);
});

describe('long runs', () => {
  it.each([3, 4])('memory stays flat over rounds of collectives and early large messages at p = %i', async (p) => {
    const r = await runJob('memory.mjs', p, { nodeArgs: ['--expose-gc'], env: { HPDL_TIMEOUT_MS: '60000' } });
    expect(r.err.join('\n')).toBe('');
    expect(r.code).toBe(0);
    for (let rank = 0; rank < p; rank++) {
      const rounds = r.reports.filter((x) => x.rank === rank) as { arrayBuffers: number; rss: number; heapUsed: number }[];
      expect(rounds).toHaveLength(8);
      // Rounds 2-4 against rounds 6-8, by median: the pools (bounded, by design) hold different
      // buffers from round to round, so single samples swing by a few tens of MB; a leak of one
      // message per iteration would add over 100 MB between the two.
      const median = (k: 'arrayBuffers' | 'rss' | 'heapUsed', from: number) => rounds.slice(from, from + 3).map((x) => x[k]).sort((a, b) => a - b)[1]!;
      expect(median('arrayBuffers', 5) - median('arrayBuffers', 1)).toBeLessThan(48e6);
      expect(median('heapUsed', 5) - median('heapUsed', 1)).toBeLessThan(8e6);
      expect(median('rss', 5) - median('rss', 1)).toBeLessThan(96e6);
    }
  }, 120_000);
});
