import { performance } from 'node:perf_hooks';

/** Pure: the text of one progress line. */
export function progressLine(label: string, done: number, total: number, elapsedMs: number, width = 24): string {
  const frac = total > 0 ? Math.min(1, done / total) : 1;
  const filled = Math.round(frac * width);
  const rate = elapsedMs > 0 ? (done * 1000) / elapsedMs : 0;
  const eta = rate > 0 && total > done ? `${Math.ceil((total - done) / rate)}s` : '0s';
  const n = (x: number) => Math.round(x).toLocaleString('en-US');
  return `${label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${(frac * 100).toFixed(0).padStart(3)}% ${n(done)}/${n(total)} events ${n(rate)} ev/s ETA ${eta}`;
}

/**
 * A progress bar on stderr: redrawn in place on a TTY (at most every 100 ms), otherwise one line
 * at most every 5 s, so logs of a non-interactive rebuild stay short.
 */
export class ProgressBar {
  private readonly started = performance.now();
  private last = 0;
  private readonly tty: boolean;
  constructor(private readonly label: string, private total: number, private readonly out: NodeJS.WriteStream = process.stderr) {
    this.tty = !!out.isTTY;
  }

  update(done: number, total = this.total, force = false): void {
    this.total = Math.max(total, done);
    const now = performance.now();
    if (!force && now - this.last < (this.tty ? 100 : 5000)) return;
    this.last = now;
    const line = progressLine(this.label, done, this.total, now - this.started);
    this.out.write(this.tty ? `\r\x1b[2K${line}` : `${line}\n`);
  }

  finish(done: number): void {
    this.update(done, this.total, true);
    if (this.tty) this.out.write('\n');
  }
}
