/**
 * Video outputs: `writeVideo` picks the writer from the file extension.
 *   .gif  animated GIF (built-in encoder)
 *   .png  contact sheet: every frame in a grid, one row block per clip
 *   .mp4  H.264 through an external ffmpeg
 * All writes are atomic (temp file in the target directory, then rename).
 */
import { extname } from "node:path";
import { UsageError } from "../errors.ts";
import type { Video } from "./frames.ts";
import { writeGif } from "./gif.ts";
import { writeMp4 } from "./mp4.ts";
import { writeContactSheet } from "./png.ts";

export const VIDEO_EXTENSIONS = [".gif", ".png", ".mp4"] as const;
export type VideoExtension = (typeof VIDEO_EXTENSIONS)[number];

export interface WriteVideoOptions {
  /** Frames per second for .gif and .mp4 (default 16). */
  fps?: number;
  /** Nearest-neighbour upscale (defaults: .gif 8, .png 4, .mp4 8). */
  scale?: number;
  /** .gif: NETSCAPE loop count, 0 = forever (default), false = play once. */
  loop?: number | false;
  /** .png: frames per row, gap in pixels, one label per clip. */
  columns?: number;
  gap?: number;
  labels?: string[];
  /** .mp4: x264 CRF and ffmpeg executable. */
  crf?: number;
  ffmpeg?: string;
}

/** The output format a path asks for (lower-cased extension), or a UsageError listing the supported ones. */
export function videoFormat(path: string): VideoExtension {
  const ext = extname(path).toLowerCase();
  if ((VIDEO_EXTENSIONS as readonly string[]).includes(ext)) return ext as VideoExtension;
  throw new UsageError(
    `unsupported video output ${ext ? `extension "${ext}"` : "without an extension"} in ${path}`,
    `use one of ${VIDEO_EXTENSIONS.join(", ")} (.png writes a contact sheet of all frames)`,
  );
}

/** Write a clip to `path` in the format its extension names. Several clips are only accepted for a
 * .png contact sheet (one row per clip). */
export async function writeVideo(path: string, video: Video | Video[], opts: WriteVideoOptions = {}): Promise<void> {
  const fmt = videoFormat(path);
  if (fmt === ".png") {
    writeContactSheet(path, video, { scale: opts.scale, columns: opts.columns, gap: opts.gap, labels: opts.labels });
    return;
  }
  let clip: Video;
  if (Array.isArray(video)) {
    if (video.length !== 1)
      throw new UsageError(`${fmt} output holds one clip, got ${video.length}`, "write a .png contact sheet to compare several clips");
    clip = video[0];
  } else clip = video;
  if (fmt === ".gif") writeGif(path, clip, { fps: opts.fps, loop: opts.loop, scale: opts.scale });
  else await writeMp4(path, clip, { fps: opts.fps, scale: opts.scale, crf: opts.crf, ffmpeg: opts.ffmpeg });
}
