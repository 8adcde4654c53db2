/**
 * A job's result is one safetensors file: tensor "video" (F32 [3, T, H, W], values nominally in [-1, 1], not clamped: a few-step run can overshoot) and
 * string metadata (prompt, seed, steps, cache tag, fps, model). It is what workers store (Redis or
 * a shared folder) and what `GET /v1/videos/{id}/content?format=safetensors` returns; GIF, PNG
 * contact sheet and MP4 are rendered from it on request by the same encoders `mixcache generate`
 * uses (src/media/).
 */
import { readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { MixCacheError } from "../errors.ts";
import { hasFfmpeg, writeMp4 } from "../media/mp4.ts";
import { encodePng, renderContactSheet } from "../media/png.ts";
import { DEFAULT_GIF_SCALE, encodeGif } from "../media/gif.ts";
import { videoToFrames, type Video } from "../media/frames.ts";

export const CONTENT_FORMATS = ["gif", "mp4", "png", "safetensors"] as const;
export type ContentFormat = (typeof CONTENT_FORMATS)[number];

export const CONTENT_TYPES: Record<ContentFormat, string> = {
  gif: "image/gif",
  mp4: "video/mp4",
  png: "image/png",
  safetensors: "application/octet-stream",
};

/** Serialize a clip as safetensors (little-endian F32, header padded to 8 bytes with spaces). */
export function encodeVideoSafetensors(video: Video, metadata: Record<string, string>): Uint8Array {
  const shape = [3, video.frames, video.height, video.width];
  const nbytes = video.data.length * 4;
  let json = Buffer.from(JSON.stringify({ __metadata__: metadata, video: { dtype: "F32", shape, data_offsets: [0, nbytes] } }), "utf8");
  const padded = Math.ceil(json.length / 8) * 8;
  if (padded !== json.length) json = Buffer.concat([json, Buffer.alloc(padded - json.length, 0x20)]);
  const out = new Uint8Array(8 + json.length + nbytes);
  const dv = new DataView(out.buffer);
  dv.setBigUint64(0, BigInt(json.length), true);
  out.set(json, 8);
  const base = 8 + json.length;
  for (let i = 0; i < video.data.length; i++) dv.setFloat32(base + 4 * i, video.data[i], true);
  return out;
}

/** Parse what encodeVideoSafetensors wrote. */
function decodeVideoSafetensors(bytes: Uint8Array): { video: Video; metadata: Record<string, string> } {
  const bad = (why: string) => new MixCacheError("IO", `stored result is not a video safetensors file: ${why}`, "the result store is damaged; resubmit the job");
  if (bytes.length < 8) throw bad("too short");
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const n = Number(dv.getBigUint64(0, true));
  if (n > bytes.length - 8) throw bad("header length past the end");
  let header: Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }> & { __metadata__?: Record<string, string> };
  try {
    header = JSON.parse(Buffer.from(bytes.buffer, bytes.byteOffset + 8, n).toString("utf8"));
  } catch (e) {
    throw bad((e as Error).message);
  }
  const t = header.video;
  if (!t || t.dtype !== "F32" || !Array.isArray(t.shape) || t.shape.length !== 4 || t.shape[0] !== 3) throw bad("no F32 [3, T, H, W] tensor named video");
  const [, frames, height, width] = t.shape;
  const count = 3 * frames * height * width;
  const [a, b] = t.data_offsets;
  if (b - a !== count * 4 || 8 + n + b > bytes.length) throw bad("data offsets do not match the shape");
  const data = new Float32Array(count);
  const base = 8 + n + a;
  for (let i = 0; i < count; i++) data[i] = dv.getFloat32(base + 4 * i, true);
  return { video: { data, channels: 3, frames, height, width }, metadata: header.__metadata__ ?? {} };
}

/** Render a stored result in the asked format. MP4 needs ffmpeg (MixCacheError "USAGE" without it). */
export async function renderContent(bytes: Uint8Array, format: ContentFormat): Promise<Uint8Array> {
  if (format === "safetensors") return bytes;
  const { video, metadata } = decodeVideoSafetensors(bytes);
  const fps = Number(metadata.fps) > 0 ? Number(metadata.fps) : 16;
  if (format === "gif") {
    const { frames, width, height } = videoToFrames(video, DEFAULT_GIF_SCALE);
    return encodeGif(frames, width, height, { fps });
  }
  if (format === "png") {
    const sheet = renderContactSheet(video);
    return encodePng(sheet.rgb, sheet.width, sheet.height);
  }
  if (!hasFfmpeg()) throw new MixCacheError("USAGE", "MP4 output needs ffmpeg on the server, and none was found", "install ffmpeg on the server (or set MIXCACHE_FFMPEG), or ask for format=gif, png or safetensors");
  const path = join(tmpdir(), `mixcache-serve-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}.mp4`);
  try {
    await writeMp4(path, video, { fps });
    return readFileSync(path);
  } finally {
    rmSync(path, { force: true });
  }
}
