/**
 * MP4 (H.264) output by piping raw RGB frames into an external `ffmpeg`. The encoder writes to a
 * temp file in the target directory that is renamed over the target only once ffmpeg succeeded,
 * so a failed or interrupted encode never leaves a broken or half-written .mp4 behind. On SIGINT,
 * SIGTERM or exit mid-encode, ffmpeg is killed and the temp removed (util/cleanup.ts); a temp left
 * by SIGKILL is swept by a later write into the same folder (util/atomic.ts).
 */
import { tempPathFor } from "../util/atomic.ts";
import { onCleanup, registerTemp } from "../util/cleanup.ts";
import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { renameSync, rmSync } from "node:fs";
import { MixCacheError } from "../errors.ts";
import { checkScale, videoToFrames, type Video } from "./frames.ts";
import { gifDelay } from "./gif.ts";

export interface Mp4Options {
  /** Frames per second (default 16). */
  fps?: number;
  /** Nearest-neighbour upscale (default 8). Bumped by one when needed so width and height are even,
   * which yuv420p requires. */
  scale?: number;
  /** x264 constant rate factor (default 18: visually near-lossless). */
  crf?: number;
  /** ffmpeg executable (default: $MIXCACHE_FFMPEG or "ffmpeg" on PATH). */
  ffmpeg?: string;
}

const DEFAULT_MP4_SCALE = 8;

function ffmpegBin(opt?: string): string {
  return opt ?? process.env.MIXCACHE_FFMPEG ?? "ffmpeg";
}

function missingFfmpeg(bin: string): MixCacheError {
  return new MixCacheError(
    "IO",
    `MP4 output needs ffmpeg, which was not found (tried "${bin}")`,
    "install it (apt-get install ffmpeg) or write a .gif output instead",
  );
}

const probed = new Map<string, boolean>();

/** Whether an ffmpeg executable can be run (probed once per executable, then cached). */
export function hasFfmpeg(bin?: string): boolean {
  const b = ffmpegBin(bin);
  let ok = probed.get(b);
  if (ok === undefined) {
    const r = spawnSync(b, ["-hide_banner", "-version"], { stdio: "ignore", timeout: 10_000 });
    ok = !r.error && r.status === 0;
    probed.set(b, ok);
  }
  return ok;
}

/** Smallest scale >= `scale` giving even output dimensions. */
function evenScale(width: number, height: number, scale: number): number {
  return (width * scale) % 2 || (height * scale) % 2 ? scale + 1 : scale;
}

/** Encode a clip to H.264 MP4 with ffmpeg (libx264, yuv420p). Resolves once the file is in place. */
export async function writeMp4(path: string, video: Video, opts: Mp4Options = {}): Promise<void> {
  const fps = opts.fps ?? 16;
  gifDelay(fps); // validates fps
  const scale = evenScale(video.width, video.height, checkScale(opts.scale ?? DEFAULT_MP4_SCALE));
  const crf = opts.crf ?? 18;
  if (!Number.isInteger(crf) || crf < 0 || crf > 51)
    throw new MixCacheError("USAGE", `crf must be an integer 0..51, got ${crf}`, "use e.g. 18 (high quality) to 28 (small)");
  const { frames, width, height } = videoToFrames(video, scale);
  const bin = ffmpegBin(opts.ffmpeg);

  const tmp = tempPathFor(path);
  const args = [
    "-hide_banner", "-loglevel", "error", "-y",
    "-f", "rawvideo", "-pix_fmt", "rgb24", "-s", `${width}x${height}`, "-r", String(fps), "-i", "-",
    "-c:v", "libx264", "-pix_fmt", "yuv420p", "-crf", String(crf), "-movflags", "+faststart",
    "-f", "mp4", tmp,
  ];
  // on a signal or exit mid-encode: kill ffmpeg (so it cannot finish the file), then remove the temp
  let child: ChildProcess | undefined;
  const releaseTemp = registerTemp(tmp);
  const releaseChild = onCleanup(() => child?.kill("SIGKILL"));
  try {
    await new Promise<void>((resolve, reject) => {
      try {
        child = spawn(bin, args, { stdio: ["pipe", "ignore", "pipe"] });
      } catch (e) {
        reject((e as NodeJS.ErrnoException).code === "ENOENT" ? missingFfmpeg(bin) : e);
        return;
      }
      let stderr = "";
      let settled = false;
      const fail = (err: Error): void => {
        if (settled) return;
        settled = true;
        child!.kill("SIGKILL");
        reject(err);
      };
      child.stderr!.setEncoding("utf8");
      child.stderr!.on("data", (d: string) => {
        stderr = (stderr + d).slice(-4000);
      });
      child.on("error", (e: NodeJS.ErrnoException) => {
        fail(e.code === "ENOENT" ? missingFfmpeg(bin) : new MixCacheError("IO", `cannot run ${bin}: ${e.message}`, "check the ffmpeg installation"));
      });
      // EPIPE when ffmpeg exits early: the exit code and stderr tell the real story.
      child.stdin!.on("error", () => {});
      child.on("close", (code, signal) => {
        if (settled) return;
        settled = true;
        if (code === 0) resolve();
        else
          reject(
            new MixCacheError(
              "IO",
              `ffmpeg failed writing ${path} (${signal ? `signal ${signal}` : `exit code ${code}`}): ${stderr.trim() || "no output"}`,
              /libx264|Unknown encoder/i.test(stderr)
                ? "install an ffmpeg built with libx264, or write a .gif output instead"
                : "check the output path is writable, or write a .gif output instead",
            ),
          );
      });
      // Stream the frames, honouring backpressure.
      const stdin = child.stdin!;
      let i = 0;
      const pump = (): void => {
        while (i < frames.length) {
          if (settled) return;
          if (!stdin.write(frames[i++])) {
            stdin.once("drain", pump);
            return;
          }
        }
        stdin.end();
      };
      pump();
    });
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    if (e instanceof MixCacheError) throw e;
    throw new MixCacheError("IO", `cannot write ${path}: ${(e as Error).message}`, "choose a writable output path with free space");
  } finally {
    releaseChild();
    releaseTemp();
  }
}
