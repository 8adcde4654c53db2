/**
 * Video tensor -> 8-bit RGB frames. A decoded clip is a Float32Array in layout [C, T, H, W]
 * (channel-major, like a PyTorch tensor [3, T, H, W]) with values in [-1, 1]. The conversion follows
 * diffusers' VideoProcessor.postprocess_video: (x / 2 + 0.5).clamp(0, 1), then (x * 255).round()
 * in float32 with numpy's round-half-to-even, so 0 -> 128, -1 -> 0, 1 -> 255.
 */
import { UsageError } from "../errors.ts";

export interface Video {
  /** [C, T, H, W] float32, values nominally in [-1, 1]. */
  data: Float32Array;
  channels: 3;
  frames: number;
  height: number;
  width: number;
}

/** Frames ready for an encoder: each `width * height * 3` bytes, interleaved RGB, row-major. */
export interface RgbFrames {
  frames: Uint8Array[];
  width: number;
  height: number;
}

/** Check a video's shape fields against its data; throws a UsageError describing the mismatch. */
export function validateVideo(video: Video, what = "video"): void {
  const { channels, frames, height, width, data } = video;
  if (channels !== 3)
    throw new UsageError(`${what}: expected 3 channels (RGB), got ${channels}`, "pass the decoded RGB clip [3, T, H, W]");
  for (const [k, v] of [["frames", frames], ["height", height], ["width", width]] as const)
    if (!Number.isInteger(v) || v < 1)
      throw new UsageError(`${what}: ${k} must be a positive integer, got ${v}`, "pass the decoded clip's real shape");
  if (!(data instanceof Float32Array))
    throw new UsageError(`${what}: data must be a Float32Array`, "pass the decoded clip as float32 [3, T, H, W]");
  const want = 3 * frames * height * width;
  if (data.length !== want)
    throw new UsageError(
      `${what}: data has ${data.length} values but [3, ${frames}, ${height}, ${width}] needs ${want}`,
      "check the layout is [C, T, H, W] and the shape fields match the data",
    );
}

/** One float in [-1, 1] to a byte, exactly as diffusers does it (float32 arithmetic, half-to-even). */
export function toByte(x: number): number {
  let v = Math.fround(Math.fround(x / 2) + 0.5);
  if (!(v > 0)) return 0; // also NaN -> 0
  if (v > 1) v = 1;
  const y = Math.fround(v * 255);
  let r = Math.round(y);
  if (r - y === 0.5 && (r & 1) === 1) r -= 1; // numpy rounds halves to even
  return r;
}

/** Convert a [3, T, H, W] clip to T interleaved RGB frames of H*W*3 bytes each. */
export function toRgbFrames(video: Video): Uint8Array[] {
  validateVideo(video);
  const { data, frames: T, height: H, width: W } = video;
  const plane = H * W;
  const chan = T * plane; // stride between channels
  const out: Uint8Array[] = [];
  for (let t = 0; t < T; t++) {
    const f = new Uint8Array(plane * 3);
    const base = t * plane;
    for (let i = 0; i < plane; i++) {
      f[i * 3] = toByte(data[base + i]);
      f[i * 3 + 1] = toByte(data[chan + base + i]);
      f[i * 3 + 2] = toByte(data[2 * chan + base + i]);
    }
    out.push(f);
  }
  return out;
}

/** Check an integer upscale factor (1 = none). */
export function checkScale(scale: number, what = "scale"): number {
  if (!Number.isInteger(scale) || scale < 1 || scale > 64)
    throw new UsageError(`${what} must be an integer from 1 to 64, got ${scale}`, "use e.g. scale 4 or 8 for 32x32 clips");
  return scale;
}

/** Nearest-neighbour integer upscale of one interleaved RGB frame. */
export function upscaleRgb(rgb: Uint8Array, width: number, height: number, scale: number): Uint8Array {
  checkScale(scale);
  if (rgb.length !== width * height * 3)
    throw new UsageError(`frame has ${rgb.length} bytes, ${width}x${height} RGB needs ${width * height * 3}`);
  if (scale === 1) return rgb;
  const ow = width * scale;
  const out = new Uint8Array(ow * height * scale * 3);
  const row = new Uint8Array(ow * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      const s = (y * width + x) * 3;
      const r = rgb[s], g = rgb[s + 1], b = rgb[s + 2];
      for (let k = 0, d = x * scale * 3; k < scale; k++, d += 3) {
        row[d] = r;
        row[d + 1] = g;
        row[d + 2] = b;
      }
    }
    for (let k = 0; k < scale; k++) out.set(row, (y * scale + k) * ow * 3);
  }
  return out;
}

/** Convert and upscale a clip in one go: what the writers feed their encoders. */
export function videoToFrames(video: Video, scale = 1): RgbFrames {
  checkScale(scale);
  const frames = toRgbFrames(video).map((f) => upscaleRgb(f, video.width, video.height, scale));
  return { frames, width: video.width * scale, height: video.height * scale };
}
