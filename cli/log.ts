/**
 * Log lines of long-running commands: JSON lines ({time, level, msg}) for
 * log collectors, or "level: msg" for people. Default: human on a TTY,
 * JSON otherwise (--log-format overrides).
 */
import { UsageError } from './args.js';

export type LogFormat = 'json' | 'text';
export type Level = 'debug' | 'info' | 'warn';

export function logFormat(flag: string | undefined, isTTY: boolean): LogFormat {
  if (flag === undefined) return isTTY ? 'text' : 'json';
  if (flag !== 'json' && flag !== 'text') throw new UsageError(`--log-format must be json or text, not '${flag}'`);
  return flag;
}

export function formatLine(format: LogFormat, level: Level, msg: string, now = new Date()): string {
  return format === 'json' ? JSON.stringify({ time: now.toISOString(), level, msg }) : `${level}: ${msg}`;
}

/** A logger for a command: debug lines only when verbose. */
export function logger(format: LogFormat, verbose: boolean, write: (line: string) => void = (l) => console.log(l)) {
  return (level: Level, msg: string) => {
    if (level !== 'debug' || verbose) write(formatLine(format, level, msg));
  };
}
