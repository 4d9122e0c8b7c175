import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));

describe('documented examples', () => {
  it('the quickstart trains, saves and reloads a CNN in a fresh process', () => {
    const r = spawnSync(process.execPath, [join(here, '../examples/quickstart.mjs')], { encoding: 'utf8', timeout: 120_000 });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^backend: /);
    expect(r.stdout).toMatch(/test accuracy (9\d|100)\.\d%/);
    expect(r.stdout).toMatch(/same outputs: true/);
  });
});
