import cliProgress from "cli-progress";

/**
 * Shows downloads on stderr: a bar with size, speed and ETA on a terminal; without one (logs,
 * CI, `docker compose run`), one plain line every 10 % or 15 s, so a log stays readable.
 */

export interface DownloadDisplay {
  start(label: string): void;
  update(received: number, total: number | undefined, bytesPerSec: number): void;
  /** Ends the current bar and prints `message` below it. */
  finish(message: string): void;
  /** A line that does not disturb the bar. */
  log(message: string): void;
  stop(): void;
}

export function createDownloadDisplay(stream: NodeJS.WriteStream = process.stderr): DownloadDisplay {
  return stream.isTTY ? new BarDisplay(stream) : new LineDisplay(stream);
}

class BarDisplay implements DownloadDisplay {
  private bar: cliProgress.SingleBar | undefined;
  private label = "";

  constructor(private readonly stream: NodeJS.WriteStream) {}

  start(label: string): void {
    this.stop();
    this.label = label;
    this.bar = new cliProgress.SingleBar(
      {
        stream: this.stream,
        format: "{label} |{bar}| {percentage}% {done}/{size} {speed} ETA {eta_text}",
        barsize: 25,
        hideCursor: true,
        clearOnComplete: false,
        etaBuffer: 50,
      },
      cliProgress.Presets.shades_classic,
    );
    this.bar.start(1, 0, { label, done: "0 B", size: "?", speed: "", eta_text: "?" });
  }

  update(received: number, total: number | undefined, bytesPerSec: number): void {
    if (!this.bar) this.start(this.label);
    const bar = this.bar!;
    const size = total ?? Math.max(received, 1);
    if (bar.getTotal() !== size) bar.setTotal(size);
    const eta = total !== undefined && bytesPerSec > 0 ? (total - received) / bytesPerSec : undefined;
    bar.update(received, {
      label: this.label,
      done: formatBytes(received),
      size: total !== undefined ? formatBytes(total) : "?",
      speed: `${formatBytes(bytesPerSec)}/s`,
      eta_text: eta !== undefined ? formatDuration(eta) : "?",
    });
  }

  finish(message: string): void {
    this.stop();
    this.stream.write(`${message}\n`);
  }

  log(message: string): void {
    if (this.bar) {
      this.bar.stop();
      this.bar = undefined;
    }
    this.stream.write(`${message}\n`);
  }

  stop(): void {
    this.bar?.stop();
    this.bar = undefined;
  }
}

class LineDisplay implements DownloadDisplay {
  private label = "";
  private lastTenth = -1;
  private lastAt = 0;

  constructor(private readonly stream: NodeJS.WriteStream) {}

  start(label: string): void {
    this.label = label;
    this.lastTenth = -1;
    this.lastAt = 0;
  }

  update(received: number, total: number | undefined, bytesPerSec: number): void {
    const now = Date.now();
    const tenth = total ? Math.floor((received / total) * 10) : -1;
    if (total ? tenth <= this.lastTenth && now - this.lastAt < 15_000 : now - this.lastAt < 15_000) return;
    this.lastTenth = Math.max(this.lastTenth, tenth);
    this.lastAt = now;
    const share = total ? `${Math.floor((received / total) * 100)}% ` : "";
    const eta = total && bytesPerSec > 0 ? `, ETA ${formatDuration((total - received) / bytesPerSec)}` : "";
    this.stream.write(
      `${this.label}: ${share}${formatBytes(received)}${total ? ` of ${formatBytes(total)}` : ""} at ${formatBytes(bytesPerSec)}/s${eta}\n`,
    );
  }

  finish(message: string): void {
    this.stream.write(`${message}\n`);
  }

  log(message: string): void {
    this.stream.write(`${message}\n`);
  }

  stop(): void {}
}

export function formatBytes(bytes: number): string {
  const units = ["B", "KB", "MB", "GB", "TB"];
  let value = bytes;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value >= 100 || unit === 0 ? Math.round(value) : value.toFixed(1)} ${units[unit]}`;
}

export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m${String(s % 60).padStart(2, "0")}s`;
  return `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, "0")}m`;
}
