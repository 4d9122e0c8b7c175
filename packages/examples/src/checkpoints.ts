import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadCheckpoint, saveCheckpoint, writeFileAtomic, type CheckpointParts } from '@hpdl/core';
import type { Communicator } from '@hpdl/comm';

/** Where a run is: the next batch to train on. */
export interface Position {
  step: number;
  epoch: number;
  index: number;
}

/** What latest.json says: the newest checkpoint every rank finished writing. */
export interface Latest extends Position {
  dir: string;
  ranks: number;
  config: Record<string, unknown>;
  /** Layers per stage: the split the run trained with (absent in checkpoints of older runs). */
  counts?: number[];
}

/** What each rank saves: its stages, optimizer and learning-rate scheduler. */
export type RankState = Omit<CheckpointParts, 'extra'>;

const rankFile = (dir: string, rank: number) => join(dir, `rank-${rank}.safetensors`);

/**
 * Every rank writes its stages (and optimizer state) under checkpoints/step-N; once all have
 * (a barrier), rank 0 points latest.json at it, atomically, and removes all but the newest `keep`.
 * A run killed at any moment leaves latest.json naming a complete checkpoint.
 */
export async function saveAll(root: string, world: Communicator, state: RankState, counts: number[], pos: Position, config: Record<string, unknown>, keep = 2): Promise<string> {
  const dir = join(root, `step-${pos.step}`);
  mkdirSync(dir, { recursive: true });
  saveCheckpoint(rankFile(dir, world.rank), { ...state, extra: { ...pos, config } });
  await world.barrier();
  if (world.rank === 0) {
    const latest: Latest = { ...pos, dir: `step-${pos.step}`, ranks: world.size, config, counts };
    writeFileAtomic(join(root, 'latest.json'), Buffer.from(JSON.stringify(latest, null, 2)));
    const old = readdirSync(root)
      .filter((d) => /^step-\d+$/.test(d))
      .map((d) => Number(d.slice(5)))
      .sort((a, b) => b - a)
      .slice(keep);
    for (const s of old) rmSync(join(root, `step-${s}`), { recursive: true, force: true });
  }
  await world.barrier();
  return dir;
}

/** Reads latest.json, or null if there is none. */
export function readLatest(root: string): Latest | null {
  const p = join(root, 'latest.json');
  if (!existsSync(p)) return null;
  return JSON.parse(readFileSync(p, 'utf8')) as Latest;
}

/**
 * Checks a checkpoint fits this run (ranks, model and data settings, and a split asked for as
 * layer counts); returns the reason if not.
 */
export function resumeProblem(latest: Latest, ranks: number, config: Record<string, unknown>, balance: string): string | null {
  if (latest.ranks !== ranks) return `it was written by ${latest.ranks} ranks, this run has ${ranks}`;
  for (const [k, v] of Object.entries(config)) {
    if (JSON.stringify(latest.config[k]) !== JSON.stringify(v)) return `it was written with ${k} = ${JSON.stringify(latest.config[k])}, this run has ${JSON.stringify(v)}`;
  }
  if (/^\d/.test(balance) && latest.counts && balance !== latest.counts.join(',')) {
    return `it was written with layers per stage ${latest.counts.join(',')}, this run asks for --balance ${balance}`;
  }
  return null;
}

/** Loads this rank's part of the checkpoint latest.json names. */
export function loadMine(root: string, latest: Latest, rank: number, state: RankState): void {
  loadCheckpoint(rankFile(join(root, latest.dir), rank), state);
}

/**
 * Drops the metric records of steps after `step` (written before a run was stopped and trained
 * again from its checkpoint at `step`), so the resumed run's records continue the file.
 */
export function truncateMetrics(path: string, step: number): void {
  if (!existsSync(path)) return;
  const kept = readFileSync(path, 'utf8')
    .split('\n')
    .filter((l) => l.trim() && (JSON.parse(l) as { step: number }).step <= step);
  writeFileAtomic(path, Buffer.from(kept.map((l) => `${l}\n`).join('')));
}
