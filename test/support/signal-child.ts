/**
 * A child process for the signal and lock tests (media.test.ts, bench.test.ts): it starts something
 * that leaves a file behind unless cleaned up, says "ready" on stdout, and waits to be signalled.
 *
 *   temp DIR          registers DIR/.held.<pid>.<ms>.tmp with util/cleanup.ts and writes it
 *   temp-exit DIR     the same, then process.exit(3) without removing it
 *   mp4 DIR FFMPEG    writeMp4(DIR/clip.mp4) through FFMPEG (a stand-in that never finishes, or
 *                     the real one with a long clip); ready when its temp exists
 *   lock DIR          takes the bench lock of DIR (bench/lock.ts)
 */
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { registerTemp } from "../../src/util/cleanup.ts";
import { writeMp4 } from "../../src/media/mp4.ts";
import { lockDir } from "../../src/bench/lock.ts";

const [mode, dir, extra] = process.argv.slice(2);
const ready = (): void => {
  process.stdout.write("ready\n");
};
const wait = (): void => {
  setInterval(() => {}, 60_000);
};

if (mode === "temp" || mode === "temp-exit") {
  const tmp = join(dir, `.held.${process.pid}.${Date.now()}.tmp`);
  registerTemp(tmp);
  writeFileSync(tmp, "half-written");
  if (mode === "temp-exit") process.exit(3);
  ready();
  wait();
} else if (mode === "mp4") {
  const frames = Number(process.env.CHILD_FRAMES ?? 4), size = Number(process.env.CHILD_SIZE ?? 8);
  const data = new Float32Array(3 * frames * size * size).map((_, i) => Math.sin(i * 0.37));
  const timer = setInterval(() => {
    if (readdirSync(dir).some((f) => f.startsWith(".clip.mp4.") && f.endsWith(".tmp"))) {
      clearInterval(timer);
      ready();
    }
  }, 5);
  writeMp4(join(dir, "clip.mp4"), { data, channels: 3, frames, height: size, width: size }, { ffmpeg: extra, scale: 8 }).then(
    () => {
      process.stdout.write(`finished ${existsSync(join(dir, "clip.mp4"))}\n`);
    },
    (e: Error) => {
      process.stderr.write(`${e.message}\n`);
      process.exit(1);
    },
  );
} else if (mode === "lock") {
  lockDir(dir);
  ready();
  wait();
} else {
  process.stderr.write(`unknown mode ${mode}\n`);
  process.exit(2);
}
