/** A one-line progress bar on stderr (only on a terminal): label, bar, i/N, elapsed and ETA. */
export class ProgressBar {
  private start = performance.now();
  private last = 0;
  private readonly enabled: boolean;
  constructor(private readonly label: string, private readonly stream: NodeJS.WriteStream = process.stderr, force?: boolean) {
    this.enabled = force ?? Boolean(stream.isTTY);
  }
  update(done: number, total: number, extra = ""): void {
    if (!this.enabled) return;
    const now = performance.now();
    if (done < total && now - this.last < 100) return;
    this.last = now;
    const el = (now - this.start) / 1000;
    const eta = done > 0 ? (el / done) * (total - done) : 0;
    const width = 24;
    const fill = Math.round((done / Math.max(1, total)) * width);
    const bar = "█".repeat(fill) + "░".repeat(width - fill);
    this.stream.write(`\r${this.label} ${bar} ${done}/${total}  ${fmtTime(el)} elapsed, ETA ${fmtTime(eta)}${extra ? "  " + extra : ""}\x1b[K`);
    if (done >= total) this.stream.write("\n");
  }
  done(): void {
    if (this.enabled) this.stream.write("\r\x1b[K");
  }
}

export function fmtTime(s: number): string {
  if (s < 60) return `${s.toFixed(1)}s`;
  const m = Math.floor(s / 60);
  return `${m}m${Math.round(s - 60 * m).toString().padStart(2, "0")}s`;
}
