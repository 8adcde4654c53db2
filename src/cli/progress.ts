/**
 * Progress on stderr. On a terminal: a one-line bar (label, bar, i/N, elapsed and ETA) redrawn in
 * place. Elsewhere (a log file, CI): a plain line at most every `logEveryMs` (default 30 s), so a
 * long run in the background still shows where it is, and short runs print nothing.
 */
export class ProgressBar {
  private start = performance.now();
  private last = 0;
  private lastLog: number;
  private readonly tty: boolean;
  constructor(
    private readonly label: string,
    private readonly stream: Pick<NodeJS.WriteStream, "write"> & { isTTY?: boolean } = process.stderr,
    force?: boolean,
    private readonly logEveryMs = 30_000,
  ) {
    this.tty = force ?? Boolean(stream.isTTY);
    this.lastLog = this.start;
  }
  update(done: number, total: number, extra = ""): void {
    const now = performance.now();
    const el = (now - this.start) / 1000;
    const eta = done > 0 ? (el / done) * (total - done) : 0;
    const status = `${done}/${total}  ${fmtTime(el)} elapsed, ETA ${fmtTime(eta)}${extra ? "  " + extra : ""}`;
    if (!this.tty) {
      if (done >= total || now - this.lastLog < this.logEveryMs) return;
      this.lastLog = now;
      this.stream.write(`${this.label.trim()} ${status}\n`);
      return;
    }
    if (done < total && now - this.last < 100) return;
    this.last = now;
    const width = 24;
    const fill = Math.round((done / Math.max(1, total)) * width);
    const bar = "█".repeat(fill) + "░".repeat(width - fill);
    this.stream.write(`\r${this.label} ${bar} ${status}\x1b[K`);
    if (done >= total) this.stream.write("\n");
  }
  done(): void {
    if (this.tty) this.stream.write("\r\x1b[K");
  }
}

export function fmtTime(s: number): string {
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${Math.round(s - 60 * m).toString().padStart(2, "0")}s`;
}
