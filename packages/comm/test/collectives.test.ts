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

describe('point to point and sub-communicators', () => {
  it.each([1, 2, 3, 5])('ordering, non-blocking requests, large and empty messages, objects, usage errors, split at p = %i', async (p) => {
    const r = await runJob('p2p.mjs', p, { env: { HPDL_TIMEOUT_MS: '60000' } });
    expect(r.err.join('\n')).toBe('');
    expect(r.code).toBe(0);
    expect(r.out.filter((l) => /p2p ok/.test(l))).toHaveLength(p);
  }, 120_000);
});
