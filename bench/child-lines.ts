/** A child process's output read line by line (the bench runner, bench:idle's servers). */
import type { Readable } from 'node:stream';

/**
 * Call `onLine` with each whole line `stream` gives; the returned function
 * says what is left after the last newline (read it once the stream ended).
 */
export function eachLine(stream: Readable, onLine: (line: string) => void): () => string {
  let rest = '';
  stream.setEncoding('utf8');
  stream.on('data', (d: string) => {
    rest += d;
    let nl;
    while ((nl = rest.indexOf('\n')) >= 0) {
      const line = rest.slice(0, nl);
      rest = rest.slice(nl + 1);
      onLine(line);
    }
  });
  return () => rest;
}
