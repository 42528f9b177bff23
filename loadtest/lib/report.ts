import { performance } from 'node:perf_hooks';

/**
 * A single updating status line on stderr (when stderr is a TTY; otherwise one line per phase and
 * at most one every 5 s), and a markdown table printer for stdout.
 */
export class Progress {
  private phase = '';
  private last = 0;
  private readonly tty = !!process.stderr.isTTY;
  private lastRateAt = performance.now();
  private lastRateCount = 0;
  private timer: NodeJS.Timeout | undefined;
  private text = '';

  /** Starts a phase; `status()` is polled every 250 ms to redraw. */
  start(phase: string, status?: () => { connected?: number; delivered?: number; note?: string }): void {
    this.stop();
    this.phase = phase;
    this.lastRateAt = performance.now();
    this.lastRateCount = 0;
    this.draw(phase, true);
    if (status) {
      this.timer = setInterval(() => {
        const s = status();
        const now = performance.now();
        let rate = '';
        if (s.delivered !== undefined) {
          const r = ((s.delivered - this.lastRateCount) * 1000) / (now - this.lastRateAt);
          this.lastRateAt = now;
          this.lastRateCount = s.delivered;
          rate = ` rate=${Math.round(r).toLocaleString('en-US')}/s`;
        }
        const parts = [this.phase];
        if (s.connected !== undefined) parts.push(`connected=${s.connected}`);
        if (s.delivered !== undefined) parts.push(`delivered=${s.delivered}${rate}`);
        if (s.note) parts.push(s.note);
        this.draw(parts.join(' '), false);
      }, 250);
      this.timer.unref();
    }
  }

  /** Prints a line that stays (above the status line). */
  log(line: string): void {
    if (this.tty) process.stderr.write(`\r\x1b[2K${line}\n${this.text}`);
    else process.stderr.write(`${line}\n`);
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    if (this.tty && this.text) process.stderr.write('\r\x1b[2K');
    this.text = '';
  }

  private draw(text: string, force: boolean): void {
    this.text = text.slice(0, (process.stderr.columns || 120) - 1);
    if (this.tty) {
      process.stderr.write(`\r\x1b[2K${this.text}`);
    } else if (force || performance.now() - this.last > 5000) {
      this.last = performance.now();
      process.stderr.write(`${text}\n`);
    }
  }
}

/** Prints a markdown table to stdout. */
export function printTable(headers: string[], rows: (string | number)[][]): void {
  const cells = [headers, ...rows.map((r) => r.map(String))];
  const widths = headers.map((_, i) => Math.max(3, ...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string => `| ${r.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
  const out = [line(headers), `|${widths.map((w) => '-'.repeat(w + 2)).join('|')}|`, ...rows.map((r) => line(r.map(String)))];
  process.stdout.write(`${out.join('\n')}\n`);
}
