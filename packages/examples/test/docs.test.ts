// Every JavaScript block of README.md, docs/ and the packages' READMEs runs against the built
// packages, or is marked as a fragment. A block's info string says how:
//   ```js              a whole program, run with node
//   ```js ranks=N      a whole program, run on N ranks with `hpdl launch`
//   ```js continues    appended to the file's previous block: the chain runs as one program
//   ```js fragment     a piece of a program: only its syntax is checked
import { execFile } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const hpdl = join(root, 'packages', 'comm', 'dist', 'cli.js');

interface Block {
  file: string;
  line: number;
  code: string;
  flags: Set<string>;
  ranks: number;
}

/** The JavaScript blocks of a Markdown file, with the flags of their info strings. */
function blocksOf(file: string): Block[] {
  const lines = readFileSync(join(root, file), 'utf8').split('\n');
  const out: Block[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^```(\S*)\s*(.*)$/.exec(lines[i]!);
    if (!open) continue;
    const end = lines.findIndex((l, j) => j > i && /^```\s*$/.test(l));
    if (end < 0) throw new Error(`${file}:${i + 1}: a code block that is never closed`);
    if (['js', 'javascript', 'mjs'].includes(open[1]!)) {
      const words = open[2]!.split(/\s+/).filter(Boolean);
      const ranks = Number(words.find((w) => w.startsWith('ranks='))?.slice(6) ?? 1);
      const flags = new Set(words.filter((w) => !w.startsWith('ranks=')));
      for (const f of flags) if (!['fragment', 'continues'].includes(f)) throw new Error(`${file}:${i + 1}: unknown code block flag '${f}'`);
      out.push({ file, line: i + 1, code: lines.slice(i + 1, end).join('\n'), flags, ranks });
    }
    i = end;
  }
  return out;
}

/** Programs: each whole block with the `continues` blocks after it. */
function programsOf(blocks: Block[]): Block[][] {
  const chains: Block[][] = [];
  for (const b of blocks) {
    if (b.flags.has('fragment')) continue;
    if (b.flags.has('continues')) {
      const last = chains.at(-1);
      if (!last || last[0]!.file !== b.file) throw new Error(`${b.file}:${b.line}: 'continues' needs a whole block before it in the same file`);
      last.push(b);
      last[0]!.ranks = Math.max(last[0]!.ranks, b.ranks); // a chain runs on the most ranks any of its blocks asks for
    } else chains.push([b]);
  }
  return chains;
}

const files = [
  'README.md',
  ...readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => `docs/${f}`),
  ...readdirSync(join(root, 'packages')).map((p) => `packages/${p}/README.md`).filter((f) => { try { readFileSync(join(root, f)); return true; } catch { return false; } }),
];
const blocks = files.flatMap(blocksOf);
const programs = programsOf(blocks);
const fragments = blocks.filter((b) => b.flags.has('fragment'));

// Programs live inside the repository so that '@hpdl/...' imports resolve as in a user's project.
mkdirSync(join(root, 'node_modules', '.cache'), { recursive: true });
const work = mkdtempSync(join(root, 'node_modules', '.cache', 'hpdl-docs-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));
const fileFor = (b: Block, suffix = '') => join(work, `${b.file.replace(/[/.]/g, '_')}-${b.line}${suffix}.mjs`);

describe('the documentation runs', () => {
  it('has JavaScript blocks, and every one belongs to a program or is marked a fragment', () => {
    expect(programs.length).toBeGreaterThan(10);
    expect(programs.flat().length + fragments.length).toBe(blocks.length);
  });

  it.each(programs.map((p) => [`${p[0]!.file}:${p.map((b) => b.line).join('+')}${p[0]!.ranks > 1 ? ` on ${p[0]!.ranks} ranks` : ''}`, p] as const))(
    '%s',
    async (_name, chain) => {
      const first = chain[0]!;
      const file = fileFor(first);
      writeFileSync(file, chain.map((b) => b.code).join('\n'));
      const dir = mkdtempSync(join(work, 'cwd-'));
      const args = first.ranks > 1 ? [hpdl, 'launch', '-n', String(first.ranks), file] : [file];
      try {
        await run(process.execPath, args, { cwd: dir, timeout: 120_000 });
      } catch (e) {
        const x = e as { code: number; stdout: string; stderr: string };
        throw new Error(`${first.file}:${first.line} failed (exit ${x.code}):\n${x.stderr || x.stdout}`);
      }
    },
    150_000,
  );

  it('programs use every name they import', () => {
    const unused: string[] = [];
    for (const chain of programs) {
      const code = chain.map((b) => b.code).join('\n');
      for (const m of code.matchAll(/^import\s*\{([^}]*)\}\s*from/gm)) {
        for (const spec of m[1]!.split(',').map((x) => x.trim()).filter(Boolean)) {
          const name = spec.split(/\s+as\s+/).at(-1)!.replace(/^type\s+/, '');
          const uses = code.match(new RegExp(`\\b${name}\\b`, 'g'))?.length ?? 0;
          if (uses < 2) unused.push(`${chain[0]!.file}:${chain[0]!.line}: ${name}`);
        }
      }
    }
    expect(unused).toEqual([]);
  });

  it('fragments are valid JavaScript', async () => {
    for (const b of fragments) {
      const file = fileFor(b, '-fragment');
      writeFileSync(file, b.code);
      await run(process.execPath, ['--check', file]).catch((e: { stderr: string }) => {
        throw new Error(`${b.file}:${b.line}: ${e.stderr}`);
      });
    }
  });
});
