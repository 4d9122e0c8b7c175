/** Levels of the comm logger, from quietest. */
const LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LEVELS)[number];

function threshold(): number {
  const want = (process.env.HPDL_LOG_LEVEL ?? 'warn').toLowerCase();
  const i = LEVELS.indexOf(want as LogLevel);
  return i < 0 ? 1 : i;
}

/** A logger that prefixes the rank and writes to stderr, filtered by HPDL_LOG_LEVEL (default warn). */
export class Logger {
  private readonly level = threshold();
  constructor(private readonly rank: number) {}
  log(level: LogLevel, msg: string): void {
    if (LEVELS.indexOf(level) <= this.level) process.stderr.write(`[hpdl comm rank ${this.rank}] ${level}: ${msg}\n`);
  }
  error(msg: string): void { this.log('error', msg); }
  warn(msg: string): void { this.log('warn', msg); }
  info(msg: string): void { this.log('info', msg); }
  debug(msg: string): void { this.log('debug', msg); }
}
